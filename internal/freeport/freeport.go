// Package freeport finds TCP ports free on loopback, for the programs and tests that
// start cluster nodes there (a node's automanaged port must be known before it starts).
package freeport

import (
	"fmt"
	"net"
)

// Take returns n distinct TCP ports free on 127.0.0.1 now. Another process may take one
// before it is used: fine for demos and tests, not for production.
func Take(n int) ([]int, error) {
	ports := make([]int, 0, n)
	listeners := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("freeport: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
