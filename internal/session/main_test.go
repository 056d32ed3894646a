package session_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Managers and stores stop every goroutine they start (health check,
// subscription, sweeper) when closed.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
