package ratelimit

import (
	"testing"

	"go.uber.org/goleak"
)

// Nothing in this package starts a goroutine; the Redis tests' clients are closed.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
