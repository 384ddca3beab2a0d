package injector

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"go.uber.org/zap"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func testConfig(native bool) *Config {
	return &Config{SidecarImage: "registry.example/authsidecar:1.0", ImagePullPolicy: "IfNotPresent", NativeSidecar: native,
		CPURequest: "10m", MemoryRequest: "32Mi", MemoryLimit: "128Mi"}
}

func appPod(labels, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "shop", Labels: labels, Annotations: annotations},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "migrate", Image: "app:1"}},
			Containers:     []corev1.Container{{Name: "app", Image: "app:1", Env: []corev1.EnvVar{{Name: "MODE", Value: "prod"}}}, {Name: "worker", Image: "app:1"}},
		},
	}
}

var optedIn = map[string]string{LabelInject: "true"}

// review sends pod through the webhook as the API server would and returns
// the answer and the pod with the patch applied.
func review(t *testing.T, cfg *Config, pod *corev1.Pod) (*admissionv1.AdmissionResponse, *corev1.Pod) {
	t.Helper()
	raw, _ := json.Marshal(pod)
	in := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "uid-1", Namespace: pod.Namespace, Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: raw}},
	}
	body, _ := json.Marshal(in)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/mutate", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	NewWebhook(cfg, zap.NewNop(), prometheusRegistry()).ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if out.Response == nil || out.Response.UID != "uid-1" || out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" {
		t.Fatalf("answer %+v", out)
	}
	if out.Response.Patch == nil {
		return out.Response, pod
	}
	if out.Response.PatchType == nil || *out.Response.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatal("a patch without PatchType JSONPatch")
	}
	patch, err := jsonpatch.DecodePatch(out.Response.Patch)
	if err != nil {
		t.Fatalf("not a JSON Patch: %v", err)
	}
	patched, err := patch.Apply(raw)
	if err != nil {
		t.Fatalf("the patch does not apply to the pod the API server sent: %v", err)
	}
	var after corev1.Pod
	if err := json.Unmarshal(patched, &after); err != nil {
		t.Fatal(err)
	}
	return out.Response, &after
}

func find(cs []corev1.Container, name string) (int, *corev1.Container) {
	for i := range cs {
		if cs[i].Name == name {
			return i, &cs[i]
		}
	}
	return -1, nil
}

func TestNativeSidecarIsTheFirstInitContainer(t *testing.T) {
	resp, pod := review(t, testConfig(true), appPod(optedIn, nil))
	if !resp.Allowed {
		t.Fatalf("refused: %v", resp.Result)
	}
	i, c := find(pod.Spec.InitContainers, ContainerName)
	if i != 0 || c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways || c.StartupProbe == nil {
		t.Fatalf("init containers %v: want a native sidecar first", pod.Spec.InitContainers)
	}
	if _, plain := find(pod.Spec.Containers, ContainerName); plain != nil {
		t.Fatal("injected twice")
	}
	if c.StartupProbe.Exec == nil || strings.Join(c.StartupProbe.Exec.Command, " ") != "/authsidecar healthcheck" {
		t.Errorf("startup probe %v", c.StartupProbe)
	}
	checkSidecar(t, c, 8080, "authsidecar", "")
	for _, app := range pod.Spec.Containers {
		if !hasEnvValue(app.Env, URLVariable, "http://127.0.0.1:8080") {
			t.Errorf("container %s lacks %s", app.Name, URLVariable)
		}
	}
	if !hasEnvValue(pod.Spec.Containers[0].Env, "MODE", "prod") {
		t.Error("the app's own env was lost")
	}
	if pod.Annotations[AnnotationStatus] != "injected" {
		t.Error("no status annotation")
	}
}

func TestClassicSidecarIsAContainer(t *testing.T) {
	resp, pod := review(t, testConfig(false), appPod(optedIn, nil))
	if !resp.Allowed {
		t.Fatalf("refused: %v", resp.Result)
	}
	_, c := find(pod.Spec.Containers, ContainerName)
	if c == nil || c.RestartPolicy != nil || c.StartupProbe != nil {
		t.Fatalf("containers %v: want a plain sidecar container", pod.Spec.Containers)
	}
	if _, init := find(pod.Spec.InitContainers, ContainerName); init != nil {
		t.Fatal("a classic sidecar among the init containers")
	}
	checkSidecar(t, c, 8080, "authsidecar", "")
}

func TestAnnotationsConfigureTheSidecar(t *testing.T) {
	_, pod := review(t, testConfig(true), appPod(optedIn, map[string]string{
		AnnotationConfigMap: "billing-config", AnnotationSecret: "billing-credentials", AnnotationPort: "9099",
		AnnotationCPURequest: "50m", AnnotationMemoryRequest: "64Mi", AnnotationCPULimit: "1", AnnotationMemoryLimit: "256Mi",
	}))
	_, c := find(pod.Spec.InitContainers, ContainerName)
	checkSidecar(t, c, 9099, "billing-config", "billing-credentials")
	r := c.Resources
	if r.Requests.Cpu().String() != "50m" || r.Requests.Memory().String() != "64Mi" || r.Limits.Cpu().String() != "1" || r.Limits.Memory().String() != "256Mi" {
		t.Errorf("resources %v", r)
	}
	if !hasEnvValue(pod.Spec.Containers[0].Env, URLVariable, "http://127.0.0.1:9099") {
		t.Error("the app does not learn the annotated port")
	}
}

func TestBadAnnotationsAreRefusedByName(t *testing.T) {
	for ann, value := range map[string]string{
		AnnotationPort: "http", AnnotationMemoryLimit: "lots", AnnotationConfigMap: "Not_A_Name",
		"authsidecar.io/secrets": "typo", AnnotationSecret: "UPPER",
	} {
		resp, _ := review(t, testConfig(true), appPod(optedIn, map[string]string{ann: value}))
		if resp.Allowed || resp.Result == nil || !strings.Contains(resp.Result.Message, ann) {
			t.Errorf("%s=%s: allowed=%v, %v; want a refusal naming it", ann, value, resp.Allowed, resp.Result)
		}
		if resp.Patch != nil {
			t.Errorf("%s: a refused pod got a patch", ann)
		}
	}
}

func TestInjectionIsIdempotent(t *testing.T) {
	_, once := review(t, testConfig(true), appPod(optedIn, nil))
	resp, twice := review(t, testConfig(true), once)
	if !resp.Allowed || resp.Patch != nil {
		t.Fatalf("a second injection patched: %s", resp.Patch)
	}
	if len(twice.Spec.InitContainers) != len(once.Spec.InitContainers) {
		t.Fatal("injected twice")
	}
	// A pod that carries the container without the annotation, too.
	manual := appPod(optedIn, nil)
	manual.Spec.Containers = append(manual.Spec.Containers, corev1.Container{Name: ContainerName, Image: "x"})
	if resp, _ := review(t, testConfig(true), manual); resp.Patch != nil {
		t.Fatal("a pod with the container was patched")
	}
}

func TestPodsNotOptedInAreLeftAlone(t *testing.T) {
	for _, labels := range []map[string]string{nil, {LabelInject: "false"}, {"app": "x"}} {
		resp, _ := review(t, testConfig(true), appPod(labels, nil))
		if !resp.Allowed || resp.Patch != nil {
			t.Errorf("labels %v: %v, patch %s", labels, resp.Allowed, resp.Patch)
		}
	}
}

func TestJobsWithoutNativeSidecarsAreRefused(t *testing.T) {
	job := appPod(optedIn, nil)
	job.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: "nightly", UID: "j"}}
	resp, _ := review(t, testConfig(false), job)
	if resp.Allowed || !strings.Contains(resp.Result.Message, "Job") {
		t.Fatalf("a Job's pod on a cluster without native sidecars: %v %v", resp.Allowed, resp.Result)
	}
	if resp, _ := review(t, testConfig(true), job); !resp.Allowed || resp.Patch == nil {
		t.Fatal("a Job's pod with native sidecars was not injected")
	}
}

func TestMalformedReviewsAndContentTypes(t *testing.T) {
	wh := NewWebhook(testConfig(true), zap.NewNop(), prometheusRegistry())
	for _, tc := range []struct {
		body, contentType string
		want              int
	}{
		{`{"kind":"AdmissionReview"`, "application/json", http.StatusBadRequest},
		{`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, "application/json", http.StatusBadRequest},
		{`{}`, "text/plain", http.StatusUnsupportedMediaType},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/mutate", strings.NewReader(tc.body))
		req.Header.Set("Content-Type", tc.contentType)
		wh.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%s %q: %d, want %d", tc.contentType, tc.body, rec.Code, tc.want)
		}
	}
}

func checkSidecar(t *testing.T, c *corev1.Container, port int32, configMap, secret string) {
	t.Helper()
	if c.Image != "registry.example/authsidecar:1.0" || strings.Join(c.Args, " ") != "serve" {
		t.Errorf("image %s args %v", c.Image, c.Args)
	}
	if !hasEnvValue(c.Env, "LISTEN_ADDR", "127.0.0.1:"+itoa(port)) {
		t.Errorf("env %v: the sidecar must listen on loopback", c.Env)
	}
	var cms, secs []string
	for _, e := range c.EnvFrom {
		if e.ConfigMapRef != nil {
			cms = append(cms, e.ConfigMapRef.Name)
		}
		if e.SecretRef != nil {
			secs = append(secs, e.SecretRef.Name)
		}
	}
	if strings.Join(cms, ",") != configMap || strings.Join(secs, ",") != secret {
		t.Errorf("envFrom config maps %v secrets %v; want %q %q", cms, secs, configMap, secret)
	}
	sc := c.SecurityContext
	if sc == nil || !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation ||
		len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("security context %+v", sc)
	}
	if c.ReadinessProbe.Exec == nil || c.LivenessProbe.Exec == nil || strings.Join(c.LivenessProbe.Exec.Command, " ") != "/authsidecar healthcheck live" {
		t.Error("probes must run authsidecar healthcheck (the sidecar is on loopback)")
	}
	// As the chart's sidecar mode probes it: an injected sidecar must not
	// be slower to leave or rejoin the pod's endpoints than a charted one.
	if c.ReadinessProbe.PeriodSeconds != 5 || c.LivenessProbe.PeriodSeconds != 10 {
		t.Errorf("readiness every %d s, liveness every %d s; the chart's sidecar: 5 and 10",
			c.ReadinessProbe.PeriodSeconds, c.LivenessProbe.PeriodSeconds)
	}
	for _, p := range c.Ports {
		if p.Name == "http" || p.ContainerPort != port {
			t.Errorf("port %+v", p)
		}
	}
}

func hasEnvValue(env []corev1.EnvVar, name, value string) bool {
	for _, e := range env {
		if e.Name == name && e.Value == value {
			return true
		}
	}
	return false
}

// Secrets as watched files and projected tokens, as the chart has them.
func TestAnnotationsMountSecretFilesAndProjectedTokens(t *testing.T) {
	_, pod := review(t, testConfig(true), appPod(optedIn, map[string]string{
		AnnotationSecret: "payments-credentials", AnnotationSecretFiles: "VEEM_CLIENT_SECRET",
		AnnotationProjectedToken: "payments=https://auth.payments.example",
	}))
	_, c := find(pod.Spec.InitContainers, ContainerName)
	for _, e := range c.EnvFrom {
		if e.SecretRef != nil {
			t.Error("the Secret is both envFrom and files")
		}
	}
	if !hasEnvValue(c.Env, "VEEM_CLIENT_SECRET_FILE", "/var/run/authsidecar/credentials/VEEM_CLIENT_SECRET") ||
		!hasEnvValue(c.Env, "PAYMENTS_CLIENT_ASSERTION_FILE", "/var/run/authsidecar/tokens/payments/token") {
		t.Errorf("env %v", c.Env)
	}
	var projected string
	for _, v := range pod.Spec.Volumes {
		if v.Projected != nil {
			projected = v.Projected.Sources[0].ServiceAccountToken.Audience
		}
	}
	if projected != "https://auth.payments.example" || len(c.VolumeMounts) != 2 {
		t.Errorf("volumes %v, mounts %v", pod.Spec.Volumes, c.VolumeMounts)
	}
	for ann, v := range map[string]string{AnnotationSecretFiles: "VEEM_CLIENT_ID", AnnotationProjectedToken: "payments"} {
		a := map[string]string{AnnotationSecret: "s", ann: v}
		if resp, _ := review(t, testConfig(true), appPod(optedIn, a)); resp.Allowed || !strings.Contains(resp.Result.Message, ann) {
			t.Errorf("%s=%s was not refused by name", ann, v)
		}
	}
}
