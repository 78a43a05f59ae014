//go:build !linux

package bridge

// killDescendants does nothing where there is no /proc: the process group kill is all.
func killDescendants(int) {}

// killTagged does nothing where there is no /proc.
func killTagged(string) {}
