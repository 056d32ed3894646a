package gateway

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/session"
)

// Every generation's Managers use the bolt store's one in-memory replay set
// (no disk write per DPoP proof), so a proof used before a reload is still
// refused after it.
func TestSharedBoltStoreKeepsOneReplaySet(t *testing.T) {
	st, err := session.OpenBoltStore(filepath.Join(t.TempDir(), "s.db"), session.BoltOptions{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	g := &Gateway{store: st}
	if _, ok := g.shared().(session.WindowOncer); !ok {
		t.Fatal("the shared bolt store hides its in-memory replay set: every proof would be a disk write")
	}
	ctx := context.Background()
	now := time.Now()
	before := session.NewManager(g.shared(), session.Options{HealthInterval: -1})
	if first, err := before.OnceWithin(ctx, "dpop:k:jti", now, now.Add(time.Minute)); !first || err != nil {
		t.Fatalf("first use: %v, %v", first, err)
	}
	_ = before.Close() // the retired generation; the store stays open
	after := session.NewManager(g.shared(), session.Options{HealthInterval: -1})
	defer after.Close()
	if first, err := after.OnceWithin(ctx, "dpop:k:jti", now, now.Add(time.Minute)); first || err != nil {
		t.Fatalf("replay after a reload: %v, %v; want refused", first, err)
	}
}
