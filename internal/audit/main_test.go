package audit

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that every Logger's writer goroutine ends with Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
