package cluster

import (
	"context"
	"time"

	"github.com/asynkron/protoactor-go/cluster/clusterproviders/etcd"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// announceAt are the times after joining at which a node using etcd writes its member key
// again. protoactor's etcd provider reads the members, then watches for changes from the
// revision it watches at, not from the one it read: a node that registers in between is
// missed by the one starting, until some later change to that key. Nodes starting
// together hit that gap; writing the key again (same value, same lease) is that change.
var announceAt = []time.Duration{time.Second, 3 * time.Second}

// announce writes this node's etcd member key again at announceAt (nothing without etcd).
func (n *Node) announce(client *clientv3.Client) {
	defer n.stopped.Done()
	if client == nil {
		return
	}
	began := time.Now()
	for _, at := range announceAt {
		select {
		case <-n.stop:
			return
		case <-time.After(time.Until(began.Add(at))):
		}
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Etcd.DialTimeout)
		n.reannounce(ctx, client)
		cancel()
	}
}

// reannounce puts this node's member key again, with its value and lease.
func (n *Node) reannounce(ctx context.Context, client *clientv3.Client) {
	resp, err := client.Get(ctx, n.cfg.Etcd.Prefix, clientv3.WithPrefix())
	if err != nil {
		n.o.log.Debug().Err(err).Msg("cluster: etcd announce")
		return
	}
	self := n.cfg.Name + "@" + n.system.ID
	for _, kv := range resp.Kvs {
		node, err := etcd.NewNodeFromBytes(kv.Value)
		if err != nil || node.ID != self {
			continue
		}
		if _, err := client.Put(ctx, string(kv.Key), string(kv.Value), clientv3.WithLease(clientv3.LeaseID(kv.Lease))); err != nil {
			n.o.log.Debug().Err(err).Msg("cluster: etcd announce")
		}
		return
	}
}
