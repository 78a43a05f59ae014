package cluster

import (
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
func (n *Node) route(pool, session string, avoid map[string]bool) (target, error) {
	loads := n.loadsNow()
	var cands []target
	var free []int
	draining := false
	for _, m := range n.membersNow() {
		addr := m.Address()
		if avoid[addr] || !slices.Contains(m.GetKinds(), Kind(pool)) {
			continue
		}
		self := addr == n.addr
		if _, lost := n.lost.Load(addr); lost && !self {
			continue
		}
		if self && (!n.hosted[pool] || n.draining.Load()) {
			continue
		}
		l := loads[addr]
		if l.GetDraining() {
			draining = true
			continue
		}
		name := l.GetNode()
		if name == "" {
			name = addr
		}
		cands = append(cands, target{addr: addr, name: name, self: self})
		free = append(free, n.free(addr, l.GetPools()[pool]))
	}
	if len(cands) == 0 {
		if len(avoid) > 0 { // this call's node was lost: that is its story
			return target{}, fmt.Errorf("no other node hosts pool %q: %w", pool, ErrNodeLost)
		}
		if draining {
			return target{}, fmt.Errorf("every node hosting pool %q is stopping: %w", pool, ErrDraining)
		}
		return target{}, fmt.Errorf("%w %q: no node of cluster %s hosts it", actors.ErrUnknownPool, pool, n.cfg.Name)
	}
	if session != "" {
		return n.sessionNode(pool, session, cands), nil
	}
	best, ties := 0, 1
	for i := 1; i < len(cands); i++ {
		switch {
		case free[i] > free[best] || (free[i] == free[best] && cands[i].self && !cands[best].self):
			best, ties = i, 1
		case free[i] == free[best] && !cands[best].self:
			ties++
			if rand.IntN(ties) == 0 { // reservoir: each tie equally likely
				best = i
			}
		}
	}
	return cands[best], nil
}

// free is how many more calls the node at addr can take now, by what it gossiped and
// what this node has sent it since (negative when it queues).
func (n *Node) free(addr string, l interface {
	GetCapacity() uint32
	GetBusy() uint32
	GetQueued() uint32
}) int {
	sent := n.out.inflight(addr)
	if l == nil || l.GetCapacity() == 0 { // not gossiped yet: worth one call
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
