package session_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Managers and stores stop every goroutine they start (health check,
// subscription, sweeper) when closed.
// One exception: after a dial to a dead node fails (the topology tests kill
// primaries), go-redis's pool keeps one goroutine that sleeps 1s before
// noticing the pool is closed; it ends by itself.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}
