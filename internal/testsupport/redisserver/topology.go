package redisserver

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel is a monitored primary, one replica and three sentinels (quorum
// two), all real processes on loopback ports, failing over within seconds.
type Sentinel struct {
	tb         testing.TB
	MasterName string
	// Nodes are the data nodes (initially Nodes[0] is the primary).
	Nodes     []*Server
	Sentinels []*Server
}

// StartSentinel starts the topology and waits until every sentinel knows the
// primary, the replica and the other sentinels, so a failover can happen.
func StartSentinel(tb testing.TB) *Sentinel {
	tb.Helper()
	t := &Sentinel{tb: tb, MasterName: "gatehouse"}
	primary := startWith(tb, nil, nil)
	replica := startWith(tb, []string{"--replicaof", "127.0.0.1", strconv.Itoa(primary.port),
		"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"}, nil)
	t.Nodes = []*Server{primary, replica}
	for range 3 {
		t.Sentinels = append(t.Sentinels, startWith(tb, nil, func(port int) string {
			// Timings are short so that a test's failover takes seconds.
			return fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d 2\n"+
				"sentinel down-after-milliseconds %[1]s 1000\n"+
				"sentinel failover-timeout %[1]s 4000\n"+
				"sentinel parallel-syncs %[1]s 1\n", t.MasterName, primary.port)
		}))
	}
	ctx := context.Background()
	waitFor(tb, 20*time.Second, "sentinels to discover the replica and each other", func() error {
		for _, s := range t.Sentinels {
			c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
			m, err := c.Master(ctx, t.MasterName).Result()
			reps, rerr := c.Replicas(ctx, t.MasterName).Result()
			c.Close()
			if err != nil || rerr != nil {
				return fmt.Errorf("sentinel %s: %v %v", s.Addr(), err, rerr)
			}
			if m["num-other-sentinels"] != "2" || len(reps) != 1 || !strings.Contains(reps[0]["flags"], "slave") ||
				strings.Contains(reps[0]["flags"], "disconnected") || reps[0]["master-link-status"] != "ok" {
				return fmt.Errorf("sentinel %s: master %v replicas %v", s.Addr(), m, reps)
			}
		}
		return nil
	})
	return t
}

// SentinelAddrs are the sentinels' host:port addresses (session.redis.addrs).
func (t *Sentinel) SentinelAddrs() []string {
	addrs := make([]string, len(t.Sentinels))
	for i, s := range t.Sentinels {
		addrs[i] = s.Addr()
	}
	return addrs
}

// PrimaryAddr asks a sentinel which node is the primary now.
func (t *Sentinel) PrimaryAddr() (string, error) {
	var last error
	for _, s := range t.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
		a, err := c.GetMasterAddrByName(context.Background(), t.MasterName).Result()
		c.Close()
		if err == nil && len(a) == 2 {
			return net.JoinHostPort(a[0], a[1]), nil
		}
		last = err
	}
	return "", fmt.Errorf("no sentinel names a primary: %v", last)
}

// KillPrimary kills the current primary (SIGKILL, no persistence) and
// returns it, so the test can Restart it (it comes back empty and the
// sentinels turn it into a replica of the new primary).
func (t *Sentinel) KillPrimary() *Server {
	t.tb.Helper()
	addr, err := t.PrimaryAddr()
	if err != nil {
		t.tb.Fatal(err)
	}
	for _, n := range t.Nodes {
		if n.Addr() == addr {
			n.Kill()
			return n
		}
	}
	t.tb.Fatalf("primary %s is none of the nodes", addr)
	return nil
}

// WaitNewPrimary waits until the sentinels name a primary other than old.
func (t *Sentinel) WaitNewPrimary(old string, timeout time.Duration) string {
	t.tb.Helper()
	var now string
	waitFor(t.tb, timeout, "sentinel failover", func() error {
		a, err := t.PrimaryAddr()
		if err != nil {
			return err
		}
		if a == old {
			return fmt.Errorf("primary is still %s", a)
		}
		now = a
		return nil
	})
	return now
}

// Cluster is a Redis Cluster of three primaries, each with one replica, all
// real processes on loopback ports; a primary lost is replaced by its
// replica within seconds (cluster-node-timeout 1s).
type Cluster struct {
	tb        testing.TB
	Primaries []*Server
	Replicas  []*Server
}

// StartCluster starts six nodes, assigns the 16384 slots to three of them,
// attaches a replica to each and waits until every node reports cluster_state:ok.
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	args := []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0",
		"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"}
	c := &Cluster{tb: tb}
	for range 3 {
		c.Primaries = append(c.Primaries, startWith(tb, args, nil))
	}
	for range 3 {
		c.Replicas = append(c.Replicas, startWith(tb, args, nil))
	}
	ctx := context.Background()
	do := func(s *Server, cmd ...any) *redis.Cmd {
		cl := redis.NewClient(&redis.Options{Addr: s.Addr()})
		defer cl.Close()
		return cl.Do(ctx, cmd...)
	}
	for i, p := range c.Primaries {
		lo, hi := i*16384/3, (i+1)*16384/3-1
		if err := do(p, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
			tb.Fatalf("cluster addslots on %s: %v", p.Addr(), err)
		}
	}
	for _, n := range append(c.Primaries[1:], c.Replicas...) {
		if err := do(c.Primaries[0], "CLUSTER", "MEET", "127.0.0.1", n.port).Err(); err != nil {
			tb.Fatalf("cluster meet %s: %v", n.Addr(), err)
		}
	}
	waitFor(tb, 20*time.Second, "every node to know the others", func() error {
		for _, n := range append(c.Primaries, c.Replicas...) {
			out, err := do(n, "CLUSTER", "NODES").Text()
			if err != nil {
				return err
			}
			if got := strings.Count(strings.TrimSpace(out), "\n") + 1; got != 6 || strings.Contains(out, "handshake") {
				return fmt.Errorf("%s knows %d nodes", n.Addr(), got)
			}
		}
		return nil
	})
	for i, r := range c.Replicas {
		id, err := do(c.Primaries[i], "CLUSTER", "MYID").Text()
		if err != nil {
			tb.Fatal(err)
		}
		if err := do(r, "CLUSTER", "REPLICATE", id).Err(); err != nil {
			tb.Fatalf("cluster replicate on %s: %v", r.Addr(), err)
		}
	}
	waitFor(tb, 30*time.Second, "cluster_state:ok with a synced replica per primary", func() error {
		for _, n := range append(c.Primaries, c.Replicas...) {
			info, err := do(n, "CLUSTER", "INFO").Text()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") {
				return fmt.Errorf("%s: not ok yet", n.Addr())
			}
		}
		for _, r := range c.Replicas {
			info, err := do(r, "INFO", "replication").Text()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "master_link_status:up") {
				return fmt.Errorf("replica %s not synced", r.Addr())
			}
		}
		return nil
	})
	return c
}

// Addrs are the primaries' addresses (session.redis.addrs; the client
// discovers the rest).
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Primaries))
	for i, s := range c.Primaries {
		addrs[i] = s.Addr()
	}
	return addrs
}

// KillPrimary kills the i-th original primary (SIGKILL); WaitHealed waits
// for its replica to take its slots over.
func (c *Cluster) KillPrimary(i int) { c.Primaries[i].Kill() }

// WaitHealed waits until the node still up report cluster_state:ok and the
// i-th replica is a primary.
func (c *Cluster) WaitHealed(i int, timeout time.Duration) {
	c.tb.Helper()
	ctx := context.Background()
	waitFor(c.tb, timeout, "cluster failover", func() error {
		cl := redis.NewClient(&redis.Options{Addr: c.Replicas[i].Addr()})
		defer cl.Close()
		info, err := cl.Do(ctx, "INFO", "replication").Text()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "role:master") {
			return fmt.Errorf("replica %s not promoted yet", c.Replicas[i].Addr())
		}
		ci, err := cl.Do(ctx, "CLUSTER", "INFO").Text()
		if err != nil || !strings.Contains(ci, "cluster_state:ok") {
			return fmt.Errorf("cluster not ok yet: %v", err)
		}
		return nil
	})
}

func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("waiting for %s: %v", what, err)
}
