package oidc

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/session"
)

func TestUserClaimsDuendeShape(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name string
		s    session.Session
		want string
	}{
		{
			name: "multi-valued claims become one entry per value, sorted by type; idle ends first",
			s: session.Session{ID: "s1", Claims: map[string]any{"sub": "u1", "groups": []any{"admins", "dev"}, "email_verified": true},
				IdleExpiry: now.Add(15 * time.Minute), AbsoluteExpiry: now.Add(time.Hour)},
			want: `[{"type":"email_verified","value":true},{"type":"groups","value":"admins"},{"type":"groups","value":"dev"},{"type":"sub","value":"u1"},` +
				`{"type":"bff:logout_url","value":"/bff/logout?sid=s1"},{"type":"bff:session_expires_in","value":900},{"type":"gatehouse:session_absolute_expires_in","value":3600}]`,
		},
		{
			name: "absolute timeout nearer than idle; sid is escaped",
			s: session.Session{ID: "a b&c", Claims: map[string]any{"sub": "u2"},
				IdleExpiry: now.Add(15 * time.Minute), AbsoluteExpiry: now.Add(time.Minute)},
			want: `[{"type":"sub","value":"u2"},{"type":"bff:logout_url","value":"/bff/logout?sid=a+b%26c"},{"type":"bff:session_expires_in","value":60},{"type":"gatehouse:session_absolute_expires_in","value":60}]`,
		},
		{
			name: "no claims, expired: zero, never negative",
			s:    session.Session{ID: "s3", IdleExpiry: now.Add(-time.Minute), AbsoluteExpiry: now.Add(-time.Minute)},
			want: `[{"type":"bff:logout_url","value":"/bff/logout?sid=s3"},{"type":"bff:session_expires_in","value":0},{"type":"gatehouse:session_absolute_expires_in","value":0}]`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(userClaims(&tt.s, now, ""))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}
