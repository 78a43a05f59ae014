// Command host is a Go program that embeds one worker and then waits to be killed; the
// specs kill it with SIGKILL and watch its worker go too. It prints "<pid> <socket>".
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/pyvisor/pyvisor/bridge"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := bridge.Start(ctx, bridge.WithTools("pyvisor_worker.examples"), bridge.WithRuntimeDir(os.Args[1]))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%d %s\n", p.PID(), p.Address())
	select {}
}
