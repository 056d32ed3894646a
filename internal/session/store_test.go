package session_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/session"
	"github.com/gatehouse-dev/gatehouse/internal/session/storetest"
)

func TestMemoryStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) session.Store {
		return session.NewMemoryStore(now)
	})
}

func TestBoltStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) session.Store {
		s, err := session.OpenBoltStore(filepath.Join(t.TempDir(), "sessions.db"), session.BoltOptions{Now: now})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
