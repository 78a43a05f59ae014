package cluster

import (
	"errors"
	"fmt"
	"testing"

	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/pyvisor/pyvisor/actors"
	"github.com/pyvisor/pyvisor/messages/clusterv1"
)

// testNode is a node at 10.0.0.1:1 that sees members with the given pools and loads,
// without a cluster behind it.
func testNode(hosted []string, members map[string][]string, loads map[string]*clusterv1.Load) *Node {
	n := &Node{addr: "10.0.0.1:1", name: "self", hosted: map[string]bool{}, cfg: Config{Name: "test"}}
	n.out.calls = map[string]*pending{}
	for _, p := range hosted {
		n.hosted[p] = true
	}
	var ms []*pcluster.Member
	for addr, pools := range members {
		host, port, _ := splitHostPort(addr)
		m := &pcluster.Member{Host: host, Port: int32(port), Id: addr}
		for _, p := range pools {
			m.Kinds = append(m.Kinds, Kind(p))
		}
		ms = append(ms, m)
	}
	n.members.Store(&ms)
	n.loads.Store(&loads)
	return n
}

func load(name string, pool string, capacity, busy, queued uint32) *clusterv1.Load {
	return &clusterv1.Load{Node: name, Pools: map[string]*clusterv1.PoolLoad{pool: {Capacity: capacity, Busy: busy, Queued: queued}}}
}

func TestRouteGoesToTheNodeWithTheMostFreeCapacity(t *testing.T) {
	n := testNode(nil, map[string][]string{"10.0.0.1:1": nil, "10.0.0.2:1": {"p"}, "10.0.0.3:1": {"p"}},
		map[string]*clusterv1.Load{"10.0.0.2:1": load("b", "p", 4, 4, 2), "10.0.0.3:1": load("c", "p", 4, 1, 0)})
	for range 20 {
		got, err := n.route("p", "", nil)
		if err != nil || got.name != "c" {
			t.Fatalf("route = %+v, %v; want c (3 free, b none)", got, err)
		}
	}
}

func TestRouteCountsTheCallsItSentSinceTheLastGossip(t *testing.T) {
	n := testNode(nil, map[string][]string{"10.0.0.2:1": {"p"}, "10.0.0.3:1": {"p"}},
		map[string]*clusterv1.Load{"10.0.0.2:1": load("b", "p", 2, 0, 0), "10.0.0.3:1": load("c", "p", 2, 0, 0)})
	n.out.byAddr = map[string]int{"10.0.0.2:1": 2} // b's two free workers are taken by calls it has not gossiped yet
	got, err := n.route("p", "", nil)
	if err != nil || got.name != "c" {
		t.Fatalf("route = %+v, %v; want c", got, err)
	}
}

func TestRouteSpreadsTiesAndPrefersItselfOnATie(t *testing.T) {
	n := testNode(nil, map[string][]string{"10.0.0.2:1": {"p"}, "10.0.0.3:1": {"p"}},
		map[string]*clusterv1.Load{"10.0.0.2:1": load("b", "p", 2, 0, 0), "10.0.0.3:1": load("c", "p", 2, 0, 0)})
	seen := map[string]int{}
	for range 200 {
		got, _ := n.route("p", "", nil)
		seen[got.name]++
	}
	if seen["b"] < 50 || seen["c"] < 50 {
		t.Errorf("ties spread %v; want both often", seen)
	}
	self := testNode([]string{"p"}, map[string][]string{"10.0.0.1:1": {"p"}, "10.0.0.2:1": {"p"}},
		map[string]*clusterv1.Load{"10.0.0.1:1": load("self", "p", 2, 0, 0), "10.0.0.2:1": load("b", "p", 2, 0, 0)})
	for range 20 {
		if got, _ := self.route("p", "", nil); !got.self {
			t.Fatalf("route = %+v; want this node on a tie", got)
		}
	}
}

func TestRouteSkipsDrainingLostAndAvoidedNodes(t *testing.T) {
	draining := load("b", "p", 8, 0, 0)
	draining.Draining = true
	n := testNode(nil, map[string][]string{"10.0.0.2:1": {"p"}, "10.0.0.3:1": {"p"}, "10.0.0.4:1": {"p"}, "10.0.0.5:1": {"p"}},
		map[string]*clusterv1.Load{"10.0.0.2:1": draining, "10.0.0.3:1": load("c", "p", 1, 1, 0),
			"10.0.0.4:1": load("d", "p", 8, 0, 0), "10.0.0.5:1": load("e", "p", 8, 0, 0)})
	n.lost.Store("10.0.0.4:1", lostMark{})
	got, err := n.route("p", "", map[string]error{"10.0.0.5:1": ErrNodeLost})
	if err != nil || got.name != "c" {
		t.Fatalf("route = %+v, %v; want c, the one left", got, err)
	}
	got, err = n.route("p", "", map[string]error{"10.0.0.3:1": ErrNodeLost, "10.0.0.5:1": ErrNodeLost})
	if err != nil || got.name != "d" {
		t.Errorf("route = %+v, %v; want d: its connection broke, but the provider still lists it", got, err)
	}
	_, err = n.route("p", "", map[string]error{"10.0.0.3:1": ErrNodeLost, "10.0.0.4:1": ErrNodeLost, "10.0.0.5:1": ErrNodeLost})
	if !errors.Is(err, ErrNodeLost) {
		t.Errorf("no node left after this call's were lost: %v; want ErrNodeLost", err)
	}
	_, err = n.route("p", "", map[string]error{"10.0.0.3:1": ErrDraining, "10.0.0.4:1": ErrDraining, "10.0.0.5:1": ErrDraining})
	if !errors.Is(err, ErrDraining) {
		t.Errorf("no node left after the others refused as draining: %v; want ErrDraining (nothing ran)", err)
	}
}

func TestRoutePrefersABusyNodeToOneWithNoReadyWorker(t *testing.T) {
	n := testNode(nil, map[string][]string{"10.0.0.2:1": {"p"}, "10.0.0.3:1": {"p"}},
		map[string]*clusterv1.Load{"10.0.0.2:1": load("b", "p", 0, 0, 50), "10.0.0.3:1": load("c", "p", 4, 4, 0)})
	for range 20 {
		if got, _ := n.route("p", "", nil); got.name != "c" {
			t.Fatalf("route = %+v; want c (busy, but its workers are up)", got)
		}
	}
}

func TestANodeServesItsOwnCallersBeforeItIsInItsMemberList(t *testing.T) {
	n := testNode([]string{"p"}, map[string][]string{}, nil)
	if got, err := n.route("p", "", nil); err != nil || !got.self {
		t.Errorf("route = %+v, %v; want this node", got, err)
	}
}

func TestRouteOfAPoolWhoseNodesAllStopIsErrDraining(t *testing.T) {
	draining := load("b", "p", 8, 0, 0)
	draining.Draining = true
	n := testNode(nil, map[string][]string{"10.0.0.2:1": {"p"}}, map[string]*clusterv1.Load{"10.0.0.2:1": draining})
	if _, err := n.route("p", "", nil); !errors.Is(err, ErrDraining) {
		t.Errorf("route = %v; want ErrDraining", err)
	}
}

func TestRouteOfAPoolNoNodeHostsIsErrUnknownPool(t *testing.T) {
	n := testNode(nil, map[string][]string{"10.0.0.2:1": {"p"}}, nil)
	if _, err := n.route("q", "", nil); !errors.Is(err, actors.ErrUnknownPool) {
		t.Errorf("route = %v; want ErrUnknownPool", err)
	}
}

func TestSessionsGoToTheSameNodeFromEveryNodeAndStayWhenANodeJoins(t *testing.T) {
	members := map[string][]string{"10.0.0.2:1": {"p"}, "10.0.0.3:1": {"p"}, "10.0.0.4:1": {"p"}}
	caller1, caller2 := testNode(nil, members, nil), testNode(nil, members, nil)
	where := map[string]string{}
	spread := map[string]int{}
	for i := range 60 {
		s := fmt.Sprint("session-", i)
		a, _ := caller1.route("p", s, nil)
		b, _ := caller2.route("p", s, nil)
		if a.addr != b.addr {
			t.Fatalf("session %s: %s from one node, %s from another", s, a.addr, b.addr)
		}
		where[s] = a.addr
		spread[a.addr]++
	}
	if len(spread) != 3 {
		t.Errorf("sessions over %v; want all three nodes", spread)
	}
	joined := map[string][]string{"10.0.0.2:1": {"p"}, "10.0.0.3:1": {"p"}, "10.0.0.4:1": {"p"}, "10.0.0.9:1": {"p"}}
	ms := *testNode(nil, joined, nil).members.Load()
	caller1.members.Store(&ms)
	for s, addr := range where {
		if got, _ := caller1.route("p", s, nil); got.addr != addr {
			t.Errorf("session %s moved from %s to %s when a node joined", s, addr, got.addr)
		}
	}
}
