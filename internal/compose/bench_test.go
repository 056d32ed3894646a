package compose

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"
)

var benchSpec = Spec{Name: "dashboard", Path: "/api/dashboard",
	Calls: []CallSpec{
		{Name: "profile", Route: "profile", Path: "/me"},
		{Name: "notifications", Route: "notifications", Path: "/unread", Optional: true},
		{Name: "weather", Route: "weather", Path: "/today", Query: map[string]string{"for": "{user.sub}"}},
		{Name: "plan", Route: "billing", Path: "/accounts/{calls.profile.account_id}/plan", DependsOn: []string{"profile"}},
	},
	Shape: `{"name": profile.name, "unread": notifications == null ? 0 : notifications.count, "plan": plan.tier, "temp": weather.temp}`,
}

// BenchmarkCompositeCPU is the composite's own cost: four calls answered
// from memory (no network), templates, scheduling, JSON parsing and shape.
func BenchmarkCompositeCPU(b *testing.B) {
	doer := memDoer{
		"profile":       `{"name":"Ada","account_id":"acct-7","email":"ada@example.com"}`,
		"notifications": `{"count":3,"items":[{"id":1},{"id":2},{"id":3}]}`,
		"weather":       `{"temp":21.5,"sky":"clear"}`,
		"billing":       `{"tier":"pro","seats":5}`,
	}
	for _, shaped := range []bool{true, false} {
		name := "shape"
		spec := benchSpec
		if !shaped {
			name, spec.Shape = "default-shape", ""
		}
		b.Run(name, func(b *testing.B) {
			set := mustCompile(b, spec)
			c, _ := set.Match("/api/dashboard")
			r := httptest.NewRequest(http.MethodGet, "/api/dashboard", nil)
			claims := map[string]any{"sub": "u-1"}
			b.ReportAllocs()
			for b.Loop() {
				w := discardWriter{h: http.Header{}}
				rep := c.Serve(&w, r, &Input{Doer: doer, Claims: claims, CallerKey: "k"})
				if rep.Status != 200 {
					b.Fatalf("status %d", rep.Status)
				}
			}
		})
	}
}

// BenchmarkCompositeVsSlowestCall measures, per iteration, the slowest call
// made directly and the composite around it (three parallel calls answering
// after 1, 2 and 3 ms, plus one dependent call after 1 ms on the fastest),
// over real HTTP. Reported: p50 of each and p50 of composite - (slowest
// chain).
func BenchmarkCompositeVsSlowestCall(b *testing.B) {
	delayed := func(d time.Duration, body string) *upstream {
		return newUpstream(b, func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(d)
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, body)
		})
	}
	p := &pipe{routes: map[string]*upstream{
		"profile":       delayed(1*time.Millisecond, `{"name":"Ada","account_id":"acct-7"}`),
		"notifications": delayed(2*time.Millisecond, `{"count":3}`),
		"weather":       delayed(3*time.Millisecond, `{"temp":21.5}`),
		"billing":       delayed(1*time.Millisecond, `{"tier":"pro"}`),
	}}
	set := mustCompile(b, benchSpec)
	c, _ := set.Match("/api/dashboard")
	r := httptest.NewRequest(http.MethodGet, "/api/dashboard", nil)
	slowest := set.all[0].calls[2]
	var direct, composite, overhead []time.Duration
	for b.Loop() {
		t0 := time.Now()
		resp, err := p.Do(context.Background(), slowest.route, http.MethodGet, "/api/weather/today", nil)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		t1 := time.Now()
		w := discardWriter{h: http.Header{}}
		if rep := c.Serve(&w, r, &Input{Doer: p, Claims: map[string]any{"sub": "u"}}); rep.Status != 200 {
			b.Fatalf("status %d", rep.Status)
		}
		t2 := time.Now()
		direct = append(direct, t1.Sub(t0))
		composite = append(composite, t2.Sub(t1))
		overhead = append(overhead, t2.Sub(t1)-t1.Sub(t0))
	}
	p50 := func(d []time.Duration) float64 { slices.Sort(d); return float64(d[len(d)/2].Microseconds()) }
	b.ReportMetric(p50(direct), "slowest-p50-µs")
	b.ReportMetric(p50(composite), "composite-p50-µs")
	b.ReportMetric(p50(overhead), "overhead-p50-µs")
}

// discardWriter is an http.ResponseWriter that keeps nothing.
type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) WriteHeader(c int)           { d.code = c }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkExpandPath: a path template with two placeholders and plain
// values; the one allocation is the resulting path string.
func BenchmarkExpandPath(b *testing.B) {
	set := mustCompile(b, Spec{Name: "e", Path: "/api/e/{id}", Calls: []CallSpec{{Name: "c", Route: "profile", Path: "/orders/{param.id}/items/{user.sub}"}}})
	k := set.all[0].calls[0]
	v := &values{claims: map[string]any{"sub": "u-12345"}, params: []string{"o-987"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, fl := k.path.expandPath(v, k.routePath, k.routePrefix); fl != nil {
			b.Fatal(fl.reason)
		}
	}
}
