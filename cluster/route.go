package cluster

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"

	"github.com/pyvisor/pyvisor/actors"
)

// target is the node a call goes to.
type target struct {
	addr, name string
	self       bool
	free       int // calls it can take now, as far as this node knows
}

// route picks the node that runs a call of pool, avoiding those in avoid: a session's
// node by its identity, else the hosting node with the most free capacity.
//
// A session's node is the highest rendezvous hash of the session's identity over the
// nodes hosting its pool: every node computes the same one from the same member list,
// with no shared table. Once chosen, it is pinned on this node for as long as it lives,
// so a node joining later does not move the sessions this node sends.
//
// Free capacity is what the node last gossiped (ready workers × max concurrent, less the
// calls it runs and queues), less, when more, the calls this node has sent it since and
// still waits for. Ties go to this node (no hop), then to a random one.
func (n *Node) route(pool, session string, avoid map[string]error) (target, error) {
	loads := n.loadsNow()
	var cands, suspects []target // suspects: nodes whose connection broke, the provider still lists
	draining, selfListed := false, false
	consider := func(addr string, kinds []string) {
		self := addr == n.addr
		selfListed = selfListed || self
		if avoid[addr] != nil || (!self && !slices.Contains(kinds, Kind(pool))) || (self && !n.hosted[pool]) {
			return
		}
		l := loads[addr]
		if l.GetDraining() || (self && n.draining.Load()) {
			draining = true
			return
		}
		name := l.GetNode()
		switch {
		case self:
			name = n.name
		case name == "":
			name = addr
		}
		t := target{addr: addr, name: name, self: self, free: n.free(addr, l.GetPools()[pool], l != nil)}
		if _, lost := n.lost.Load(addr); lost && !self {
			suspects = append(suspects, t)
			return
		}
		cands = append(cands, t)
	}
	for _, m := range n.membersNow() {
		consider(m.Address(), m.GetKinds())
	}
	if !selfListed { // before this node's first topology, or left out of it: it still serves its own callers
		consider(n.addr, nil)
	}
	if len(cands) == 0 {
		// Only nodes whose connection broke: the provider still lists them, so they may be
		// back (a connection that came back, a loss reported late). A call to one that is
		// really gone fails at once with ErrNodeLost.
		cands = suspects
	}
	if len(cands) == 0 {
		for _, why := range avoid { // this call's node was lost: that is its story
			if errors.Is(why, ErrNodeLost) {
				return target{}, fmt.Errorf("no other node hosts pool %q: %w", pool, ErrNodeLost)
			}
		}
		if draining || len(avoid) > 0 {
			return target{}, fmt.Errorf("every node hosting pool %q is stopping: %w", pool, ErrDraining)
		}
		return target{}, fmt.Errorf("%w %q: no node of cluster %s hosts it", actors.ErrUnknownPool, pool, n.cfg.Name)
	}
	if session != "" {
		return n.sessionNode(pool, session, cands), nil
	}
	best, ties := 0, 1
	for i := 1; i < len(cands); i++ {
		fi, fb := cands[i].free, cands[best].free
		switch {
		case fi > fb || (fi == fb && cands[i].self && !cands[best].self):
			best, ties = i, 1
		case fi == fb && !cands[best].self:
			ties++
			if rand.IntN(ties) == 0 { // reservoir: each tie equally likely
				best = i
			}
		}
	}
	return cands[best], nil
}

// free is how many more calls the node at addr can take now, by what it gossiped and
// what this node has sent it since (negative when it queues). A node not gossiped yet
// (known false) is worth one call; one gossiped with no ready worker, none.
func (n *Node) free(addr string, l interface {
	GetCapacity() uint32
	GetBusy() uint32
	GetQueued() uint32
}, known bool) int {
	sent := n.out.inflight(addr)
	if !known {
		return 1 - sent
	}
	return int(l.GetCapacity()) - max(int(l.GetBusy()+l.GetQueued()), sent)
}

// mix is splitmix64's finalizer: FNV alone moves its high bits too little for the
// comparison of rendezvous scores, and would send most sessions to one node.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// maxPins bounds the sessions pinned on a node; past it the pins start over (each
// session then goes where its hash says, as the others do).
const maxPins = 1 << 16

// sessionNode is the node of a session: pinned, or by rendezvous hashing.
func (n *Node) sessionNode(pool, session string, cands []target) target {
	key := pool + "/" + session
	if addr, ok := n.pins.Load(key); ok {
		for _, c := range cands {
			if c.addr == addr {
				return c
			}
		}
	}
	best, top := 0, uint64(0)
	for i, c := range cands {
		h := fnv.New64a()
		_, _ = h.Write([]byte(c.addr))
		_, _ = h.Write([]byte{0})
		_, _ = h.Write([]byte(key))
		if s := mix(h.Sum64()); s > top || i == 0 {
			best, top = i, s
		}
	}
	if n.pinned.Add(1) > maxPins { // sessions this node no longer calls: start over
		n.pins.Clear()
		n.pinned.Store(1)
	}
	n.pins.Store(key, cands[best].addr)
	return cands[best]
}
