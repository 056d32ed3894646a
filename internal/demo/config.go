package demo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"text/template"
)

// configTemplate is the demo's Gatehouse configuration, in the same contract as
// gatehouse.example.yaml. Every path in it is relative to the data directory, where the file
// is written, so no path needs quoting. Composites are left out: they are not built yet
// and the loader rejects them.
var configTemplate = template.Must(template.New("gatehouse.yaml").Funcs(template.FuncMap{
	"q": func(s string) (string, error) { // a JSON string is a valid YAML double-quoted scalar
		b, err := json.Marshal(s)
		return string(b), err
	},
}).Parse(`# Written by ` + "`gatehouse demo`" + `. DEMO MODE — for trying Gatehouse, never for production.
# Relative paths resolve against this file's directory.
client: demo-spa
listen: {{q .Listen}}
admin_listen: {{q .AdminListen}}
public_url: {{q .PublicURL}}

frontend:
  static_dir: ./web

identity:
  issuer: {{q .Issuer}}
  client_id: {{q .ClientID}}
  client_secret: ${file:./client-secret}
  scopes: [openid, profile, email, offline_access]

session:
  store: bolt
  bolt: { path: ./sessions.db }
  cookie_name: gatehouse          # plain-http loopback: browsers refuse the __Host- prefix
  cookie_keys:
    - ${file:./cookie-key}
  same_site: strict
  idle_timeout: 15m
  absolute_timeout: 1h

csrf:
  header: X-CSRF

routes:
  - name: profile
    path: /api/profile/
    upstream: {{q .Profile}}
    methods: [GET]
    credential: user_token
    allow: 'user.email_verified == true'   # CEL, checked on every request

  - name: billing
    path: /api/billing/
    upstream: {{q .Billing}}
    methods: [GET]
    credential:
      token_exchange:
        audience: {{q .BillingAudience}}
    allow: 'session.age < duration("12h") && request.path.startsWith("/api/billing/")'

  - name: notifications
    path: /api/notifications/
    upstream: {{q .Notifications}}
    methods: [GET]
    credential: client_credentials

  - name: weather
    path: /api/weather/
    upstream: {{q .Weather}}
    methods: [GET]
    credential:
      header:
        name: X-Api-Key
        value: ${file:./weather-api-key}
    timeout: 5s

  - name: reports                        # refused for the demo users: shows a policy denial
    path: /api/reports/
    upstream: {{q .Profile}}
    methods: [GET]
    credential: user_token
    allow: 'user.email.endsWith("@finance.example.com")'

  - name: operator                       # demo only: revokes a session through the admin API
    path: /api/operator/
    upstream: {{q .Operator}}
    methods: [POST]
    credential: none

  - name: audit
    path: /api/audit/
    upstream: {{q .Audit}}
    methods: [GET]
    credential: none

composites:                              # one request, three calls in parallel, one shaped answer
  - name: dashboard
    path: /api/dashboard
    calls:                               # each call gets its own route's policy, credential and audit record
      profile:       { route: profile, path: /me }
      notifications: { route: notifications, path: /unread, optional: true }
      plan:          { route: billing, path: /plan }
    shape: |
      {"name": profile.name,
       "unread": notifications == null ? 0 : notifications.unread,
       "plan": plan.plan,
       "features": plan.features}

agents:                           # the SPA can mint gha_ tokens for these, at most
  max_ttl: 15m
  default_ttl: 5m
  delegable_routes: [profile, billing]
  rate_limit: { requests: 30, per: 1m }

audit:
  sink: file
  path: ./audit.jsonl

telemetry:
  log_level: warn

admin:
  token: ${file:./admin-token}
`))

// configData fills configTemplate.
type configData struct {
	Listen, AdminListen, PublicURL, Issuer, ClientID, BillingAudience string
	Profile, Billing, Notifications, Weather, Audit, Operator         string
}

func renderConfig(d configData) ([]byte, error) {
	var buf bytes.Buffer
	if err := configTemplate.Execute(&buf, d); err != nil {
		return nil, fmt.Errorf("render demo config: %w", err)
	}
	return buf.Bytes(), nil
}
