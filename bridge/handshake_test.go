package bridge

import (
	"errors"
	"testing"
)

func TestParseHandshake(t *testing.T) {
	good := []struct {
		line string
		want Handshake
	}{
		{"PYVISOR|1|unix|/tmp/pyvisor-a/worker.sock\n", Handshake{1, "unix", "/tmp/pyvisor-a/worker.sock"}},
		{"PYVISOR|1|tcp|127.0.0.1:4711", Handshake{1, "tcp", "127.0.0.1:4711"}},
	}
	for _, tc := range good {
		got, err := ParseHandshake(tc.line)
		if err != nil || got != tc.want {
			t.Errorf("ParseHandshake(%q) = %+v, %v; want %+v", tc.line, got, err, tc.want)
		}
	}
	bad := []string{
		"", "hello world", "PYVISOR|1|unix", "PYVISOR|x|unix|/s", "PYVISOR|2|unix|/s",
		"PYVISOR|1|udp|/s", "PYVISOR|1|unix|", "PYVISOR|1|tcp|0.0.0.0:80", "pyvisor|1|unix|/s",
	}
	for _, line := range bad {
		if _, err := ParseHandshake(line); !errors.Is(err, ErrHandshake) {
			t.Errorf("ParseHandshake(%q) error = %v, want ErrHandshake", line, err)
		}
	}
}

func TestHandshakeTarget(t *testing.T) {
	if got := (Handshake{1, "unix", "/a/b.sock"}).Target(); got != "unix:///a/b.sock" {
		t.Errorf("unix target = %q", got)
	}
	if got := (Handshake{1, "tcp", "127.0.0.1:9"}).Target(); got != "passthrough:///127.0.0.1:9" {
		t.Errorf("tcp target = %q", got)
	}
}
