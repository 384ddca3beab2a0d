package injector

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/authsidecar/authsidecar/internal/config"
	"github.com/authsidecar/authsidecar/internal/route"
	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The names a workload uses to ask for the sidecar: a contract.
const (
	// LabelInject on a pod opts it in, in a namespace labelled
	// NamespaceLabel: enabled. Both are selectors of the webhook, so the
	// API server calls it for opted-in pods only.
	LabelInject    = "authsidecar.io/inject"
	NamespaceLabel = "authsidecar.io/injection"

	annotationPrefix        = "authsidecar.io/"
	AnnotationConfigMap     = "authsidecar.io/config-map"
	AnnotationSecret        = "authsidecar.io/secret"
	AnnotationPort          = "authsidecar.io/port"
	AnnotationCPURequest    = "authsidecar.io/cpu-request"
	AnnotationMemoryRequest = "authsidecar.io/memory-request"
	AnnotationCPULimit      = "authsidecar.io/cpu-limit"
	AnnotationMemoryLimit   = "authsidecar.io/memory-limit"
	// AnnotationSecretFiles lists keys of the authsidecar.io/secret Secret
	// to mount as watched files (X_FILE) instead of loading it with
	// envFrom: a rotated Secret applies without a restart.
	AnnotationSecretFiles = "authsidecar.io/secret-files"
	// AnnotationProjectedToken mounts a projected service-account token as
	// a route's client assertion: ROUTE=AUDIENCE, comma-separated.
	AnnotationProjectedToken = "authsidecar.io/projected-token"
	// AnnotationStatus marks an injected pod, so a second call (a
	// reinvocation, a re-created pod) changes nothing.
	AnnotationStatus = "authsidecar.io/status"
	statusInjected   = "injected"

	// ContainerName is the injected container's name.
	ContainerName = "authsidecar"
	// URLVariable tells every app container where the sidecar listens.
	URLVariable = "AUTHSIDECAR_URL"

	defaultConfigMap = "authsidecar"
	defaultPort      = 8080
)

// knownAnnotations are every authsidecar.io/ annotation a pod may carry.
var knownAnnotations = map[string]bool{
	AnnotationConfigMap: true, AnnotationSecret: true, AnnotationPort: true,
	AnnotationCPURequest: true, AnnotationMemoryRequest: true, AnnotationCPULimit: true, AnnotationMemoryLimit: true,
	AnnotationStatus: true, AnnotationSecretFiles: true, AnnotationProjectedToken: true,
}

// Decision is what the injector made of one pod.
type Decision struct {
	// Outcome is injected, skipped or refused.
	Outcome string
	// Reason says why, for logs, metrics and (when refused) the person
	// whose pod was not created.
	Reason string
	// Patch is the JSON Patch (RFC 6902) that injects the sidecar.
	Patch []byte
}

// podSettings are what a pod's annotations ask of its sidecar.
type podSettings struct {
	configMap, secret string
	port              int
	resources         corev1.ResourceRequirements
	secretFiles       []string
	// projected is route → audience of its projected token.
	projected map[string]string
}

// settingsOf reads a pod's annotations. An unknown authsidecar.io/
// annotation or a bad value is an error naming it: a pod is not created
// half-configured.
func (c *Config) settingsOf(ann map[string]string) (podSettings, error) {
	s := podSettings{configMap: defaultConfigMap, port: defaultPort}
	for k := range ann {
		if strings.HasPrefix(k, annotationPrefix) && !knownAnnotations[k] {
			return s, fmt.Errorf("annotation %s: unknown (known: %s)", k, strings.Join(sortedKeys(knownAnnotations), ", "))
		}
	}
	for _, n := range []struct {
		key  string
		dest *string
	}{{AnnotationConfigMap, &s.configMap}, {AnnotationSecret, &s.secret}} {
		v, ok := ann[n.key]
		if !ok {
			continue
		}
		if errs := validation.IsDNS1123Subdomain(v); len(errs) > 0 {
			return s, fmt.Errorf("annotation %s: %q is not a valid name: %s", n.key, v, strings.Join(errs, "; "))
		}
		*n.dest = v
	}
	if v, ok := ann[AnnotationSecretFiles]; ok {
		if s.secret == "" {
			return s, fmt.Errorf("annotation %s: needs %s, the Secret the files come from", AnnotationSecretFiles, AnnotationSecret)
		}
		for _, k := range strings.Split(v, ",") {
			k = strings.TrimSpace(k)
			if !config.RouteSecretVariable(k) {
				return s, fmt.Errorf("annotation %s: %q is not a route's CLIENT_SECRET, PASSWORD, ACCESS_TOKEN or REFRESH_TOKEN variable", AnnotationSecretFiles, k)
			}
			s.secretFiles = append(s.secretFiles, k)
		}
	}
	if v, ok := ann[AnnotationProjectedToken]; ok {
		s.projected = map[string]string{}
		for _, pair := range strings.Split(v, ",") {
			name, aud, found := strings.Cut(strings.TrimSpace(pair), "=")
			if !found || !route.ValidName(name) || aud == "" {
				return s, fmt.Errorf("annotation %s: %q is not ROUTE=AUDIENCE", AnnotationProjectedToken, pair)
			}
			s.projected[name] = aud
		}
	}
	if v, ok := ann[AnnotationPort]; ok {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			return s, fmt.Errorf("annotation %s: %q is not a port (1-65535)", AnnotationPort, v)
		}
		s.port = p
	}
	s.resources = corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	for _, q := range []struct {
		key, def string
		list     corev1.ResourceList
		name     corev1.ResourceName
	}{
		{AnnotationCPURequest, c.CPURequest, s.resources.Requests, corev1.ResourceCPU},
		{AnnotationMemoryRequest, c.MemoryRequest, s.resources.Requests, corev1.ResourceMemory},
		{AnnotationCPULimit, c.CPULimit, s.resources.Limits, corev1.ResourceCPU},
		{AnnotationMemoryLimit, c.MemoryLimit, s.resources.Limits, corev1.ResourceMemory},
	} {
		v, ok := ann[q.key]
		if !ok {
			v = q.def
		}
		if v == "" {
			continue
		}
		qty, err := resource.ParseQuantity(v)
		if err != nil {
			return s, fmt.Errorf("annotation %s: %q is not a quantity such as 10m or 64Mi", q.key, v)
		}
		q.list[q.name] = qty
	}
	return s, nil
}

// Mutate decides about a pod (its JSON, as the API server sent it).
func (c *Config) Mutate(raw []byte) (Decision, error) {
	var pod corev1.Pod
	if err := json.Unmarshal(raw, &pod); err != nil {
		return Decision{}, fmt.Errorf("decoding the pod: %w", err)
	}
	switch {
	case pod.Labels[LabelInject] != "true":
		return Decision{Outcome: "skipped", Reason: "not opted in (label " + LabelInject + ` is not "true")`}, nil
	case pod.Annotations[AnnotationStatus] == statusInjected || hasContainer(pod.Spec.InitContainers) || hasContainer(pod.Spec.Containers):
		return Decision{Outcome: "skipped", Reason: "already injected"}, nil
	}
	s, err := c.settingsOf(pod.Annotations)
	if err != nil {
		return Decision{Outcome: "refused", Reason: err.Error()}, nil
	}
	if !c.NativeSidecar && ownedByJob(pod) {
		return Decision{Outcome: "refused", Reason: "the pod belongs to a Job, and this cluster gets no native sidecars (Kubernetes before 1.29, INJECTOR_NATIVE_SIDECAR=false): a regular sidecar container would keep the Job's pod running forever"}, nil
	}

	before, err := json.Marshal(&pod)
	if err != nil {
		return Decision{}, fmt.Errorf("encoding the pod: %w", err)
	}
	c.inject(&pod, s)
	after, err := json.Marshal(&pod)
	if err != nil {
		return Decision{}, fmt.Errorf("encoding the injected pod: %w", err)
	}
	ops, err := jsonpatch.CreatePatch(before, after)
	if err != nil {
		return Decision{}, fmt.Errorf("making the patch: %w", err)
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return Decision{}, fmt.Errorf("encoding the patch: %w", err)
	}
	mode := "a native sidecar"
	if !c.NativeSidecar {
		mode = "a container"
	}
	return Decision{Outcome: "injected", Reason: fmt.Sprintf("as %s on port %d", mode, s.port), Patch: patch}, nil
}

// inject adds the sidecar to pod: first of the init containers as a native
// sidecar (it starts before the app and stops after it), or last of the
// containers; and tells every app container where it listens.
func (c *Config) inject(pod *corev1.Pod, s podSettings) {
	sidecar := c.container(s)
	pod.Spec.Volumes = append(pod.Spec.Volumes, volumes(s)...)
	if c.NativeSidecar {
		always := corev1.ContainerRestartPolicyAlways
		sidecar.RestartPolicy = &always
		sidecar.StartupProbe = probe(false)
		sidecar.StartupProbe.PeriodSeconds, sidecar.StartupProbe.FailureThreshold = 1, 30
		pod.Spec.InitContainers = append([]corev1.Container{sidecar}, pod.Spec.InitContainers...)
	} else {
		pod.Spec.Containers = append(pod.Spec.Containers, sidecar)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", s.port)
	for i := range pod.Spec.Containers {
		ct := &pod.Spec.Containers[i]
		if ct.Name == ContainerName || hasEnv(ct.Env, URLVariable) {
			continue
		}
		ct.Env = append(ct.Env, corev1.EnvVar{Name: URLVariable, Value: url})
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[AnnotationStatus] = statusInjected
}

func hasContainer(cs []corev1.Container) bool {
	for _, c := range cs {
		if c.Name == ContainerName {
			return true
		}
	}
	return false
}

func hasEnv(env []corev1.EnvVar, name string) bool {
	for _, e := range env {
		if e.Name == name {
			return true
		}
	}
	return false
}

func ownedByJob(pod corev1.Pod) bool {
	for _, o := range pod.OwnerReferences {
		if o.Kind == "Job" && strings.HasPrefix(o.APIVersion, "batch/") {
			return true
		}
	}
	return false
}

func sortedKeys(m map[string]bool) []string { return slices.Sorted(maps.Keys(m)) }
