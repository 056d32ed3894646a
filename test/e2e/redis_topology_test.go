package e2e

// Gatehouse on Redis Sentinel and Redis Cluster (real processes): a signed-in
// user's API calls keep going while a primary is killed. During the failover
// they get 503, never another status; afterwards they succeed again without
// a Gatehouse restart, and a revocation made after the failover holds.

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/testsupport/redisserver"
)

func TestGatewaySurvivesSentinelFailover(t *testing.T) {
	st := redisserver.StartSentinel(t)
	failoverThroughGateway(t, "sentinel", `    addrs: [`+strings.Join(st.SentinelAddrs(), ", ")+`]
    master_name: `+st.MasterName+"\n", func() {
		old := st.KillPrimary()
		st.WaitNewPrimary(old.Addr(), 30*time.Second)
	})
}

func TestGatewaySurvivesClusterPrimaryLoss(t *testing.T) {
	cl := redisserver.StartCluster(t)
	failoverThroughGateway(t, "cluster", `    addrs: [`+strings.Join(cl.Addrs(), ", ")+"]\n", func() {
		cl.KillPrimary(0)
		cl.WaitHealed(0, 30*time.Second)
	})
}

func failoverThroughGateway(t *testing.T, name, redisKeys string, failover func()) {
	const adminToken = "admin-token-e2e-topology-0123456789"
	dir := t.TempDir()
	sessWriteFile(t, dir, "admin-token", adminToken)
	up := newRecorder(t, nil)
	e := startGW(t, gwOptions{Dir: dir, Config: strings.ReplaceAll(refreshRoute, "{{.Upstream}}", up.URL) + `
admin:
  token: ${file:admin-token}
session:
  store: redis
  redis:
` + redisKeys})
	browsers := []*http.Client{e.login("alice", "wonderland"), e.login("alice", "wonderland"), e.login("bob", "builder")}
	time.Sleep(200 * time.Millisecond) // let the replicas catch up with the logins

	var sent, ok, unavailable, other int
	call := func(b *http.Client) int {
		req, _ := http.NewRequest("GET", e.URL+"/api/profile/me", nil)
		req.Header.Set("X-CSRF", "1")
		resp, err := b.Do(req)
		sent++
		if err != nil {
			other++
			t.Logf("request failed: %v", err)
			return 0
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case 200:
			ok++
		case http.StatusServiceUnavailable:
			unavailable++
		default:
			other++
			t.Logf("status %d", resp.StatusCode)
		}
		return resp.StatusCode
	}
	done := make(chan struct{})
	go func() { defer close(done); failover() }()
	// Bounded: until the failover is over and service is back, at most 60s.
	deadline := time.Now().Add(60 * time.Second)
	over := false
	for !over && time.Now().Before(deadline) {
		for _, b := range browsers {
			call(b)
		}
		select {
		case <-done:
			over = true
		default:
			time.Sleep(10 * time.Millisecond)
		}
	}
	if !over {
		t.Fatal("the failover did not finish within 60s")
	}
	// Service resumes by itself (all three sessions were replicated).
	resumed := false
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		good := 0
		for _, b := range browsers {
			if call(b) == 200 {
				good++
			}
		}
		if good == len(browsers) {
			resumed = true
			break
		}
	}
	// A revocation after the failover holds. While the client still learns
	// the new slot layout the admin API may answer 503 (the revocation was
	// not acknowledged, so the operator repeats it; it is idempotent).
	lost := 0
	for tries := 1; ; tries++ {
		c, body := e.sessAdmin(nil, "POST", "/admin/sessions/revoke?sub=user-bob", adminToken)
		if c == 200 {
			t.Logf("revocation acknowledged at try %d", tries)
			break
		}
		if c != http.StatusServiceUnavailable || tries == 30 {
			t.Fatalf("revoke bob: %d %s\nlogs:\n%s", c, body, sessTail(e.Logs.String(), 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	req, _ := http.NewRequest("GET", e.URL+"/api/profile/me", nil)
	req.Header.Set("X-CSRF", "1")
	if resp, err := browsers[2].Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		lost++
		if resp != nil {
			resp.Body.Close()
		}
	}
	counts := fmt.Sprintf("sent=%d 2xx=%d 503=%d other=%d lost_revocations=%d", sent, ok, unavailable, other, lost)
	t.Logf("%s failover through the gateway: %s", name, counts)
	fmt.Printf("%s failover through the gateway: %s\n", name, counts)
	if !resumed {
		t.Errorf("service did not resume within 20s of the failover\nlogs:\n%s", sessTail(e.Logs.String(), 3000))
	}
	if other != 0 || lost != 0 {
		t.Errorf("other=%d lost_revocations=%d; want 0", other, lost)
	}
}
