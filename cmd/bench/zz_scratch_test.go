package main

import (
	"context"
	"os"
	"testing"
	"time"
)

func TestScratchCluster(t *testing.T) {
	s := settings{python: os.Getenv("PYVISOR_PYTHON"), calls: 3000, warmup: 300, callers: 8, tpDuration: time.Second, tpRounds: 3}
	printHeader(s)
	if err := clusterCalls(context.Background(), s); err != nil {
		t.Fatal(err)
	}
}
