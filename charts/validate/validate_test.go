// Package validate checks the chart's rendered manifests against the
// Kubernetes API types, offline: every document decodes strictly (an unknown
// or misplaced field fails) into its typed object, and each mode has the
// shape it promises. .ci/run renders the chart and points RENDERED_DIR here.
package validate

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// rendered is one `helm template` output, decoded.
type rendered struct {
	configMaps  []corev1.ConfigMap
	services    []corev1.Service
	deployments []appsv1.Deployment
	policies    []networkingv1.NetworkPolicy
	pdbs        []policyv1.PodDisruptionBudget
	secrets     []corev1.Secret
	webhooks    []admissionregistrationv1.MutatingWebhookConfiguration
}

func load(t *testing.T, name string) rendered {
	t.Helper()
	dir := os.Getenv("RENDERED_DIR")
	if dir == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("RENDERED_DIR is not set: .ci/run renders the chart first")
		}
		t.Skip("set RENDERED_DIR to a folder of `helm template` outputs (see .ci/run)")
	}
	raw, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	var r rendered
	for i, doc := range bytes.Split(raw, []byte("\n---")) {
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatalf("%s document %d: %v", name, i, err)
		}
		var target any
		switch head.APIVersion + " " + head.Kind {
		case "v1 ConfigMap":
			r.configMaps = append(r.configMaps, corev1.ConfigMap{})
			target = &r.configMaps[len(r.configMaps)-1]
		case "v1 Service":
			r.services = append(r.services, corev1.Service{})
			target = &r.services[len(r.services)-1]
		case "apps/v1 Deployment":
			r.deployments = append(r.deployments, appsv1.Deployment{})
			target = &r.deployments[len(r.deployments)-1]
		case "networking.k8s.io/v1 NetworkPolicy":
			r.policies = append(r.policies, networkingv1.NetworkPolicy{})
			target = &r.policies[len(r.policies)-1]
		case "policy/v1 PodDisruptionBudget":
			r.pdbs = append(r.pdbs, policyv1.PodDisruptionBudget{})
			target = &r.pdbs[len(r.pdbs)-1]
		case "v1 Secret":
			r.secrets = append(r.secrets, corev1.Secret{})
			target = &r.secrets[len(r.secrets)-1]
		case "admissionregistration.k8s.io/v1 MutatingWebhookConfiguration":
			r.webhooks = append(r.webhooks, admissionregistrationv1.MutatingWebhookConfiguration{})
			target = &r.webhooks[len(r.webhooks)-1]
		case "monitoring.coreos.com/v1 ServiceMonitor":
			continue // a CRD: not in k8s.io/api
		default:
			t.Fatalf("%s document %d: unexpected %s %s", name, i, head.APIVersion, head.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, target); err != nil {
			t.Fatalf("%s document %d (%s) does not decode strictly: %v", name, i, head.Kind, err)
		}
	}
	return r
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

func findContainer(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

// checkHardened asserts the container's secure defaults.
func checkHardened(t *testing.T, c *corev1.Container) {
	t.Helper()
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("no securityContext")
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Error("not runAsNonRoot")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("root filesystem not read-only")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("privilege escalation allowed")
	case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL"):
		t.Error("capabilities not all dropped")
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Error("seccomp not RuntimeDefault")
	}
	if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("no memory request or limit")
	}
	if c.LivenessProbe == nil || c.ReadinessProbe == nil {
		t.Error("missing liveness or readiness probe")
	}
	for _, e := range c.Env {
		if e.Value != "" && !strings.HasPrefix(e.Name, "INJECTOR_") && !strings.HasSuffix(e.Name, "_FILE") && e.Name != "LOG_LEVEL" && e.Name != "LOG_FORMAT" {
			t.Errorf("env %s is inline; secrets come from Secrets", e.Name)
		}
	}
}

func configValue(t *testing.T, r rendered, key string) string {
	t.Helper()
	if len(r.configMaps) != 1 {
		t.Fatalf("%d ConfigMaps, want 1", len(r.configMaps))
	}
	return r.configMaps[0].Data[key]
}

func TestSharedMode(t *testing.T) {
	for _, kube := range []string{"1.28", "1.33"} {
		t.Run(kube, func(t *testing.T) {
			r := load(t, "shared-"+kube+".yaml")
			if len(r.deployments) != 1 || len(r.services) != 1 || len(r.policies) != 1 || len(r.pdbs) != 1 {
				t.Fatalf("shared mode rendered %d Deployments, %d Services, %d NetworkPolicies, %d PDBs; want 1 each",
					len(r.deployments), len(r.services), len(r.policies), len(r.pdbs))
			}
			d := r.deployments[0]
			c := findContainer(d.Spec.Template.Spec.Containers, "authsidecar")
			if c == nil {
				t.Fatal("no authsidecar container")
			}
			checkHardened(t, c)
			if c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" {
				t.Error("shared mode probes are not /readyz and /healthz")
			}
			if d.Spec.Template.Annotations["checksum/authsidecar-config"] == "" {
				t.Error("no config checksum: a changed config would not roll the pods")
			}
			if d.Spec.Template.Annotations["checksum/authsidecar-secrets"] == "" {
				t.Error("no secrets checksum: a changed credentials Secret would not roll the pods")
			}
			if len(r.policies[0].Spec.Ingress) < 2 {
				t.Error("the ServiceMonitor is on but the NetworkPolicy lets no Prometheus in")
			}
			if got := configValue(t, r, "LISTEN_ADDR"); !strings.HasPrefix(got, "0.0.0.0:") {
				t.Errorf("shared mode LISTEN_ADDR %q, want all interfaces", got)
			}
			hasClientKeys := false
			for _, e := range c.Env {
				hasClientKeys = hasClientKeys || (e.Name == "CLIENT_KEYS" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil)
			}
			if ep, sampler := configValue(t, r, "OTEL_EXPORTER_OTLP_ENDPOINT"), configValue(t, r, "OTEL_TRACES_SAMPLER"); ep != "http://otel-collector.observability:4318" || sampler != "parentbased_traceidratio" {
				t.Errorf("tracing rendered as endpoint %q, sampler %q", ep, sampler)
			}
			if rate, wait := configValue(t, r, "VEEM_RATE_LIMIT"), configValue(t, r, "VEEM_RATE_LIMIT_MAX_WAIT"); rate != "10/s" || wait != "2s" {
				t.Errorf("veem's rate limit rendered as %q, %q", rate, wait)
			}
			if routes, accounts := configValue(t, r, "CLIENT_KEY_ACME_ROUTES"), configValue(t, r, "CLIENT_KEY_ACME_ACCOUNTS"); routes != "viewneo" || accounts != "acme-*" {
				t.Errorf("tenant acme's rules rendered as %q and %q", routes, accounts)
			}
			if !hasClientKeys {
				t.Error("shared mode without client keys")
			}
			if len(r.policies[0].Spec.Ingress) == 0 || len(r.policies[0].Spec.Ingress[0].From) == 0 {
				t.Error("the NetworkPolicy admits nobody in particular")
			}
		})
	}
}

func TestSidecarMode(t *testing.T) {
	for _, tc := range []struct {
		kube   string
		native bool
	}{{"1.28", false}, {"1.33", true}} {
		t.Run(tc.kube, func(t *testing.T) {
			r := load(t, "sidecar-"+tc.kube+".yaml")
			if len(r.deployments) != 1 || len(r.services) != 0 {
				t.Fatalf("sidecar mode rendered %d Deployments (the app's), %d Services; want 1, 0", len(r.deployments), len(r.services))
			}
			spec := r.deployments[0].Spec.Template.Spec
			init := findContainer(spec.InitContainers, "authsidecar")
			plain := findContainer(spec.Containers, "authsidecar")
			if findContainer(spec.Containers, "app") == nil {
				t.Fatal("the app's own container is missing")
			}
			c := plain
			if tc.native {
				if init == nil || plain != nil {
					t.Fatalf("Kubernetes %s: want a native sidecar (init container), got init=%v plain=%v", tc.kube, init != nil, plain != nil)
				}
				if init.RestartPolicy == nil || *init.RestartPolicy != corev1.ContainerRestartPolicyAlways {
					t.Error("the native sidecar lacks restartPolicy: Always")
				}
				if init.StartupProbe == nil {
					t.Error("the native sidecar has no startup probe")
				}
				c = init
			} else if plain == nil || init != nil {
				t.Fatalf("Kubernetes %s: want a plain sidecar container, got init=%v plain=%v", tc.kube, init != nil, plain != nil)
			}
			checkHardened(t, c)
			for _, p := range c.Ports {
				if p.Name == "http" {
					t.Error("the sidecar's port is named http, which the app's may be too")
				}
			}
			if c.ReadinessProbe.Exec == nil {
				t.Error("a sidecar on loopback needs exec probes; kubelet's HTTP probes go to the pod IP")
			}
			if got := configValue(t, r, "LISTEN_ADDR"); !strings.HasPrefix(got, "127.0.0.1:") {
				t.Errorf("sidecar LISTEN_ADDR %q, want loopback", got)
			}
		})
	}
}

func TestInjectorMode(t *testing.T) {
	for _, tc := range []struct {
		kube   string
		native string
	}{{"1.28", "false"}, {"1.33", "true"}} {
		t.Run(tc.kube, func(t *testing.T) {
			r := load(t, "injector-"+tc.kube+".yaml")
			if len(r.deployments) != 1 || len(r.services) != 1 || len(r.pdbs) != 1 || len(r.webhooks) != 1 || len(r.secrets) != 1 || len(r.configMaps) != 0 {
				t.Fatalf("injector mode rendered %d Deployments, %d Services, %d PDBs, %d webhooks, %d Secrets, %d ConfigMaps",
					len(r.deployments), len(r.services), len(r.pdbs), len(r.webhooks), len(r.secrets), len(r.configMaps))
			}
			d := r.deployments[0]
			if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
				t.Error("the injector does not run 2 replicas")
			}
			c := findContainer(d.Spec.Template.Spec.Containers, "injector")
			if c == nil {
				t.Fatal("no injector container")
			}
			checkHardened(t, c)
			env := map[string]string{}
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
			if env["INJECTOR_NATIVE_SIDECAR"] != tc.native || env["INJECTOR_SIDECAR_IMAGE"] == "" || env["INJECTOR_TLS_CERT_FILE"] == "" {
				t.Errorf("injector env %v", env)
			}
			w := r.webhooks[0].Webhooks
			if len(w) != 1 {
				t.Fatalf("%d webhooks", len(w))
			}
			hook := w[0]
			if hook.FailurePolicy == nil || *hook.FailurePolicy != admissionregistrationv1.Fail ||
				hook.SideEffects == nil || *hook.SideEffects != admissionregistrationv1.SideEffectClassNone ||
				hook.TimeoutSeconds == nil || hook.ClientConfig.Service == nil || *hook.ClientConfig.Service.Path != "/mutate" ||
				len(hook.ClientConfig.CABundle) == 0 {
				t.Errorf("webhook %+v", hook)
			}
			if hook.ObjectSelector == nil || hook.ObjectSelector.MatchLabels["authsidecar.io/inject"] != "true" ||
				hook.NamespaceSelector == nil || hook.NamespaceSelector.MatchLabels["authsidecar.io/injection"] != "enabled" {
				t.Error("the webhook is not limited to opted-in pods in opted-in namespaces")
			}
			if len(r.secrets[0].Data["tls.crt"]) == 0 || len(r.secrets[0].Data["tls.key"]) == 0 {
				t.Error("no serving certificate")
			}
		})
	}
}

// Credentials mounted as files (watched by the sidecar) and a projected
// service-account token as a route's client assertion.
func TestSecretsAsFiles(t *testing.T) {
	r := load(t, "files-1.33.yaml")
	if len(r.deployments) != 1 {
		t.Fatalf("%d Deployments", len(r.deployments))
	}
	spec := r.deployments[0].Spec.Template.Spec
	c := findContainer(spec.Containers, "authsidecar")
	checkHardened(t, c)
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if env["VEEM_CLIENT_SECRET_FILE"] == "" || env["PAYMENTS_CLIENT_ASSERTION_FILE"] == "" {
		t.Errorf("env %v lacks the _FILE variables", env)
	}
	for _, e := range c.EnvFrom {
		if e.SecretRef != nil {
			t.Error("the credentials Secret is both files and envFrom: X and X_FILE would both be set")
		}
	}
	mounted := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounted[m.Name] = m.MountPath
	}
	var projected *corev1.ServiceAccountTokenProjection
	for _, v := range spec.Volumes {
		if _, ok := mounted[v.Name]; !ok {
			t.Errorf("volume %s is not mounted", v.Name)
		}
		if v.Projected != nil {
			projected = v.Projected.Sources[0].ServiceAccountToken
		}
	}
	if projected == nil || projected.Audience != "https://auth.payments.example" || !strings.HasPrefix(env["PAYMENTS_CLIENT_ASSERTION_FILE"], mounted["authsidecar-token-payments"]) {
		t.Errorf("projected token %+v at %v", projected, mounted)
	}
}
