package bridge

import (
	"fmt"
	"strconv"
	"strings"
)

// ProtocolVersion is the handshake protocol this bridge speaks.
const ProtocolVersion = 1

// Handshake is the one line a worker prints on stdout once it serves:
// "PYVISOR|<version>|<network>|<address>", e.g. "PYVISOR|1|unix|/tmp/pyvisor-x/worker.sock".
type Handshake struct {
	Version int
	Network string // "unix" or "tcp"
	Address string
}

// Target is the gRPC dial target of the handshake's address.
func (h Handshake) Target() string {
	if h.Network == "unix" {
		return "unix://" + h.Address
	}
	return "passthrough:///" + h.Address
}

// ParseHandshake parses a handshake line; any other line is an ErrHandshake.
func ParseHandshake(line string) (Handshake, error) {
	line = strings.TrimRight(line, "\r\n")
	parts := strings.SplitN(line, "|", 4)
	if len(parts) != 4 || parts[0] != "PYVISOR" {
		return Handshake{}, fmt.Errorf("%w: first stdout line is %q, want %q", ErrHandshake, clip(line, 200), "PYVISOR|1|unix|<socket>")
	}
	v, err := strconv.Atoi(parts[1])
	if err != nil {
		return Handshake{}, fmt.Errorf("%w: protocol version %q is not a number", ErrHandshake, parts[1])
	}
	if v != ProtocolVersion {
		return Handshake{}, fmt.Errorf("%w: worker speaks protocol %d, this bridge speaks %d", ErrHandshake, v, ProtocolVersion)
	}
	h := Handshake{Version: v, Network: parts[2], Address: parts[3]}
	switch {
	case h.Network != "unix" && h.Network != "tcp":
		return Handshake{}, fmt.Errorf("%w: unknown network %q", ErrHandshake, h.Network)
	case h.Address == "":
		return Handshake{}, fmt.Errorf("%w: empty address", ErrHandshake)
	case h.Network == "tcp" && !strings.HasPrefix(h.Address, "127.0.0.1:"):
		return Handshake{}, fmt.Errorf("%w: tcp address %q is not on 127.0.0.1", ErrHandshake, h.Address)
	}
	return h, nil
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
