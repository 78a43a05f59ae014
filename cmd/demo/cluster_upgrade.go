package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/pyvisor/pyvisor"
)

// rollingReport is what the cluster demo's summary shows of the rolling upgrade.
type rollingReport struct {
	ran           bool
	calls, failed int            // calls from client that overlapped the rolling upgrade, and the failed ones
	byNode        map[string]int // the successful ones, by the node that ran them
	took          time.Duration  // from the first SIGHUP to the last node's report
	nodes         []nodeUpgrade  // in the order they were upgraded
}

// nodeUpgrade is one node's step of the rolling upgrade.
type nodeUpgrade struct {
	node            string
	before, after   string        // the versions its workers ran
	pidsBefore, now []int         // its Python workers
	took            time.Duration // its ReloadAs's
	from, to        time.Time     // from the SIGHUP to its report, as seen here
	callsOnIt       int           // calls it ran for client meanwhile
	err             string
}

// upgraded says whether the node's reload went as expected: no error, every worker on
// the new version, in new Python processes.
func (u nodeUpgrade) upgraded() bool {
	fresh := len(u.now) > 0
	for _, pid := range u.now {
		fresh = fresh && !slices.Contains(u.pidsBefore, pid)
	}
	return u.err == "" && u.after == upgradeVersion && u.before != u.after && fresh
}

// rollingUpgrade upgrades pool shared node by node while rollingCallers callers on this
// node keep calling it: SIGHUP to gpu-1, whose reloadNode rolls demo-v2 through its
// two workers one at a time and reports on stdout when every worker runs it; then the
// same for gpu-2. A node that did not upgrade stops the rollout there, as a deploy
// would. Every call made meanwhile must succeed: the node being upgraded keeps serving
// (each slot's old process serves until its new one is ready), and the other node serves
// as well.
func (c *clusterScenario) rollingUpgrade(ctx context.Context, nodes map[string]*nodeProc) bool {
	c.log.Info().Int("callers", rollingCallers).Strs("nodes", hostingNodes).Str("version", upgradeVersion).
		Msg("rolling upgrade of pool shared, node by node, while callers on client keep calling it")
	l := startLoad(ctx, rollingCallers, func(ctx context.Context, args map[string]int) (pyvisor.Result, string, error) {
		res, ran, err := c.call(ctx, "demo-cluster-rolling", "add", args)
		return res, ran.Node, err
	})
	if err := sleep(ctx, loadLead); err != nil {
		l.end()
		return false
	}
	r := rollingReport{ran: true}
	began := time.Now()
	ok := true
	for _, name := range hostingNodes {
		u := c.upgradeNode(ctx, nodes[name])
		r.nodes = append(r.nodes, u)
		if ok = c.tally.expect(u.upgraded(), fmt.Sprintf("rolling upgrade: node %s did not upgrade: %s -> %s, pids %v -> %v, %s",
			name, u.before, u.after, u.pidsBefore, u.now, u.err)); !ok {
			break // the next nodes keep the old version: a deploy stops at the first node that fails
		}
	}
	ended := time.Now()
	r.took = ended.Sub(began)
	_ = sleep(ctx, loadTail)
	l.end()
	r.calls, r.failed, r.byNode = l.duringByNode(began, ended)
	for i, u := range r.nodes {
		_, _, on := l.duringByNode(u.from, u.to)
		r.nodes[i].callsOnIt = on[u.node]
	}
	c.rolled = r
	failed, total, first := l.failures()
	ok = c.tally.expect(failed == 0, fmt.Sprintf("rolling upgrade: %d of %d calls under load failed, the first: %v", failed, total, first)) && ok
	ok = c.tally.expect(len(r.byNode) == len(hostingNodes), fmt.Sprintf("rolling upgrade: calls ran on %s, want every hosting node", counts(r.byNode))) && ok
	ev, msg := c.log.Info(), "the rolling upgrade is done: every node's workers run "+upgradeVersion+", and no call failed meanwhile"
	if !ok {
		ev, msg = c.log.Error(), "the rolling upgrade did not go as expected"
	}
	ev.Int("calls_during", r.calls).Int("failed_during", r.failed).Str("by_node", counts(r.byNode)).
		Stringer("took", round(r.took)).Msg(msg)
	return ok
}

// upgradeNode sends SIGHUP to node n and waits for its report that the reload is done.
func (c *clusterScenario) upgradeNode(ctx context.Context, n *nodeProc) nodeUpgrade {
	u := nodeUpgrade{node: n.name, before: n.last.Version, pidsBefore: n.last.PIDs}
	c.log.Info().Str("node", n.name).Int("pid", n.cmd.Process.Pid).Str("version", u.before).
		Msg("SIGHUP to node " + n.name + ": it reloads its pool shared as " + upgradeVersion + " and reports when every worker runs it")
	u.from = time.Now()
	if err := n.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		u.err, u.to = err.Error(), time.Now()
		return u
	}
	select {
	case r := <-n.reports:
		u.after, u.now, u.took, u.err = r.Version, r.PIDs, r.Took, r.Err
		n.last = r
		n.pids = append(n.pids, r.PIDs...)
	case <-n.done:
		u.err = "the node exited"
	case <-time.After(nodeUpgradeTimeout):
		u.err = fmt.Sprintf("no report after %v", nodeUpgradeTimeout)
	case <-ctx.Done():
		u.err = ctx.Err().Error()
	}
	u.to = time.Now()
	if u.err == "" {
		c.log.Info().Str("node", n.name).Str("version_before", u.before).Str("version_after", u.after).
			Ints("python_pids_before", u.pidsBefore).Ints("python_pids", u.now).Stringer("took", round(u.took)).
			Msg("node " + n.name + " reports its pool upgraded: on to the next node")
	}
	return u
}

// write writes the rolling upgrade's lines of the cluster demo's summary, if it ran.
func (r rollingReport) write(w io.Writer) {
	if !r.ran {
		return
	}
	upgraded := 0
	for _, u := range r.nodes {
		if u.upgraded() {
			upgraded++
		}
	}
	fmt.Fprintf(w, "  rolling upgrade, node by node, under load: %d of %d nodes upgraded in %s; %d calls during it, %d failed; by node %s\n",
		upgraded, len(hostingNodes), round(r.took), r.calls, r.failed, counts(r.byNode))
	for _, u := range r.nodes {
		status := "upgraded"
		if !u.upgraded() {
			status = "NOT upgraded: " + u.err
		}
		fmt.Fprintf(w, "    %s %s: %s -> %s in %s (Python pids %s -> %s), %d calls served on it meanwhile\n",
			u.node, status, u.before, u.after, round(u.took), joinInts(u.pidsBefore), joinInts(u.now), u.callsOnIt)
	}
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ",")
}
