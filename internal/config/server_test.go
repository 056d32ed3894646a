package config

import (
	"strings"
	"testing"
	"time"
)

// TestServerAndAuditDurabilityKeys: defaults, values and refusals of server.* and the audit
// durability keys.
func TestServerAndAuditDurabilityKeys(t *testing.T) {
	c, err := parseString(t, head)
	if err != nil {
		t.Fatal(err)
	}
	if c.Audit.Durability != "written" || c.Audit.Buffer != 0 || c.Server.ShutdownTimeout != 30*time.Second ||
		c.Server.BodyReadTimeout != 10*time.Second || c.Server.DrainDelay != 0 || c.Server.MaxConnections != 0 || c.Server.ReadyRequiresIdP {
		t.Fatalf("defaults: %+v %+v", c.Audit, c.Server)
	}
	c, err = parseString(t, head+`audit:
  durability: interval
  buffer: 64
server:
  shutdown_timeout: 5s
  drain_delay: 2s
  body_read_timeout: 3s
  max_connections: 1000
  ready_requires_idp: true
`)
	if err != nil {
		t.Fatal(err)
	}
	if c.Audit.Durability != "interval" || c.Audit.Buffer != 64 || c.Server.ShutdownTimeout != 5*time.Second ||
		c.Server.DrainDelay != 2*time.Second || c.Server.BodyReadTimeout != 3*time.Second || c.Server.MaxConnections != 1000 || !c.Server.ReadyRequiresIdP {
		t.Fatalf("values: %+v %+v", c.Audit, c.Server)
	}
	for _, v := range []string{"sync", "written", "interval"} {
		if c, err := parseString(t, head+"audit:\n  durability: "+v+"\n"); err != nil || c.Audit.Durability != v {
			t.Fatalf("durability %s: %v %+v", v, err, c)
		}
	}
	for _, tt := range []struct{ src, want string }{
		{"audit:\n  durability: fast\n", "audit.durability"},
		{"audit:\n  buffer: 2\n", "audit.buffer: must be at least 4"},
		{"server:\n  max_connections: 0\n", "server.max_connections: must be at least 1"},
		{"server:\n  shutdown_timeout: 0s\n", "server.shutdown_timeout"},
		{"server:\n  body_read_timeout: 10\n", "server.body_read_timeout"},
		{"server:\n  ready_requires_idp: maybe\n", "server.ready_requires_idp"},
		{"server:\n  max_conections: 5\n", `did you mean "max_connections"`},
	} {
		_, err := parseString(t, head+tt.src)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.src, err, tt.want)
		}
	}
}
