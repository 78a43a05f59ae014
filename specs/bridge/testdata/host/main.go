// Command host is a Go program that embeds one worker, has it start the example tool
// spawn_children, and then waits to be killed; the specs kill it with SIGKILL and watch its
// worker and the tool's processes go too. It prints "<pid> <socket> <child> <session>
// <orphan>".
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
	res, err := p.Client().Execute(ctx, bridge.Request{Tool: "spawn_children"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var pids struct{ Child, Session, Orphan int }
	if err := res.Decode(&pids); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%d %s %d %d %d\n", p.PID(), p.Address(), pids.Child, pids.Session, pids.Orphan)
	select {}
}
