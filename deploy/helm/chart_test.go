// Package helm holds the Gatehouse Helm chart (deploy/helm/gatehouse) and a
// test that lints it, renders it for each Redis topology with helm, and
// checks the rendered manifests: probes, security context, the admin port
// kept off the Service and the public path, no secret in a ConfigMap, and a
// configuration file Gatehouse accepts.
package helm

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/gatehouse-dev/gatehouse/internal/config"
)

const helmHint = "helm not found: set GATEHOUSE_HELM to a helm v3 binary, or put helm on PATH " +
	"(go install helm.sh/helm/v3/cmd/helm@v3.19.0; .ci/run does this)"

func helmBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("GATEHOUSE_HELM"); p != "" {
		return p
	}
	p, err := exec.LookPath("helm")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(helmHint)
		}
		t.Skip(helmHint)
	}
	return p
}

func helm(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(helmBinary(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return out
}

// The secret values the test renders with; none may appear in a ConfigMap.
var testSecrets = map[string]string{
	"client-secret":  "CLIENT-SECRET-never-in-configmap-0123456789",
	"cookie-key":     "COOKIE-KEY-never-in-configmap-0123456789abcdefghij",
	"admin-token":    "ADMIN-TOKEN-never-in-configmap-0123456789abcdef",
	"redis-password": "REDIS-PASSWORD-never-in-configmap",
}

func render(t *testing.T, set ...string) []map[string]any {
	t.Helper()
	args := []string{"template", "t", "gatehouse", "--kube-version", "1.31.0"}
	for k, v := range testSecrets {
		args = append(args, "--set", "secrets.create."+k+"="+v)
	}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out := helm(t, args...)
	var docs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("rendered manifests are not YAML: %v", err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
	return docs
}

func byKind(t *testing.T, docs []map[string]any, kind string) map[string]any {
	t.Helper()
	for _, d := range docs {
		if d["kind"] == kind {
			return d
		}
	}
	t.Fatalf("no %s rendered", kind)
	return nil
}

// at walks a path of map keys and list indexes.
func at(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("at %v: %v is not a map", path, v)
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("at %v: %v is not a list of %d", path, v, k+1)
			}
			v = l[k]
		}
	}
	return v
}

func TestChartLints(t *testing.T) {
	helm(t, "lint", "gatehouse", "--kube-version", "1.31.0", "--strict")
}

func TestChartRendersSafeManifests(t *testing.T) {
	modes := map[string][]string{
		"standalone": nil,
		"sentinel":   {"redis.mode=sentinel", "redis.addrs={s1:26379,s2:26379,s3:26379}", "redis.masterName=gatehouse", "redis.passwordKey=redis-password"},
		"cluster":    {"redis.mode=cluster", "redis.addrs={c1:6379,c2:6379,c3:6379}"},
		"bolt":       {"redis.mode=none", "replicaCount=1", "autoscaling.enabled=false"},
	}
	for name, set := range modes {
		t.Run(name, func(t *testing.T) {
			docs := render(t, set...)
			dep := byKind(t, docs, "Deployment")
			pod := at(t, dep, "spec", "template", "spec")
			c := at(t, pod, "containers", 0)

			// Probes reach /healthz and /readyz on the admin port.
			for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"} {
				if got := at(t, c, probe, "httpGet", "path"); got != path {
					t.Errorf("%s path = %v, want %s", probe, got, path)
				}
				if got := at(t, c, probe, "httpGet", "port"); got != "admin" {
					t.Errorf("%s port = %v, want admin", probe, got)
				}
			}
			if got := at(t, c, "lifecycle", "preStop", "sleep", "seconds"); got == nil {
				t.Error("no preStop sleep: the pod would stop before leaving the endpoints")
			}
			// Non-root, read-only root filesystem, no capabilities.
			if at(t, pod, "securityContext", "runAsNonRoot") != true || at(t, pod, "securityContext", "runAsUser") != 65532 {
				t.Errorf("pod securityContext = %v", at(t, pod, "securityContext"))
			}
			sc := at(t, c, "securityContext")
			if at(t, sc, "readOnlyRootFilesystem") != true || at(t, sc, "allowPrivilegeEscalation") != false ||
				at(t, sc, "capabilities", "drop", 0) != "ALL" {
				t.Errorf("container securityContext = %v", sc)
			}
			if at(t, pod, "automountServiceAccountToken") != false {
				t.Error("the service account token is mounted; Gatehouse does not use the Kubernetes API")
			}
			// The Service carries the public port only.
			svc := byKind(t, docs, "Service")
			ports := at(t, svc, "spec", "ports").([]any)
			if len(ports) != 1 || at(t, ports[0], "targetPort") != "http" {
				t.Errorf("Service ports = %v, want only the public port", ports)
			}
			// The NetworkPolicy admits the admin port only from named peers.
			np := byKind(t, docs, "NetworkPolicy")
			for _, r := range at(t, np, "spec", "ingress").([]any) {
				if at(t, r, "ports", 0, "port") == 9090 && at(t, r, "from") == nil {
					t.Error("NetworkPolicy opens the admin port to everyone")
				}
			}
			// No secret value in any ConfigMap; the config references files.
			cm := byKind(t, docs, "ConfigMap")
			raw, _ := yaml.Marshal(cm)
			for k, v := range testSecrets {
				if strings.Contains(string(raw), v) {
					t.Errorf("secret %s is in the ConfigMap", k)
				}
			}
			sec := byKind(t, docs, "Secret")
			if at(t, sec, "stringData", "client-secret") != testSecrets["client-secret"] {
				t.Error("the Secret does not carry the client secret")
			}
			mounted := false
			for _, v := range at(t, c, "volumeMounts").([]any) {
				if at(t, v, "mountPath") == "/run/secrets/gatehouse" && at(t, v, "readOnly") == true {
					mounted = true
				}
			}
			if !mounted {
				t.Error("secrets are not mounted read-only at /run/secrets/gatehouse")
			}

			// The rendered configuration is one Gatehouse accepts, with the
			// secret files at the mount path.
			dir := t.TempDir()
			for k, v := range testSecrets {
				if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			file := at(t, cm, "data", "gatehouse.yaml").(string)
			file = strings.ReplaceAll(file, "/run/secrets/gatehouse", dir)
			cfg, err := config.Parse([]byte(file), "gatehouse.yaml", dir)
			if err != nil {
				t.Fatalf("the rendered gatehouse.yaml is refused: %v\n%s", err, file)
			}
			if cfg.AdminListen != "0.0.0.0:9090" || cfg.Listen != "0.0.0.0:8080" {
				t.Errorf("listen %s admin_listen %s", cfg.Listen, cfg.AdminListen)
			}
			wantStore := map[string]config.StoreKind{"bolt": config.StoreBolt}[name]
			if wantStore == "" {
				wantStore = config.StoreRedis
			}
			if cfg.Session.Store != wantStore {
				t.Errorf("session.store = %s, want %s", cfg.Session.Store, wantStore)
			}
		})
	}
}

func TestChartRefusesBoltWithSeveralReplicas(t *testing.T) {
	cmd := exec.Command(helmBinary(t), "template", "t", "gatehouse", "--kube-version", "1.31.0", "--set", "redis.mode=none")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "serves one instance") {
		t.Fatalf("bolt with 3 replicas rendered: %v\n%s", err, out)
	}
}
