// Package injector is the mutating admission webhook that adds the
// authsidecar container to pods that opt in (label authsidecar.io/inject:
// "true", in a namespace labelled authsidecar.io/injection: enabled), the way
// Vault's agent injector and Istio add theirs. It needs no access to the
// Kubernetes API: what it injects comes from its own settings and the pod's
// annotations.
package injector

import (
	"errors"
	"fmt"
	"strings"

	"github.com/caarlos0/env/v11"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Config is the injector's settings, from the environment, so the same
// binary runs in or out of a cluster with the Deployment's settings.
type Config struct {
	ListenAddr string `env:"INJECTOR_LISTEN_ADDR" envDefault:":8443"`
	CertFile   string `env:"INJECTOR_TLS_CERT_FILE"`
	KeyFile    string `env:"INJECTOR_TLS_KEY_FILE"`
	// SidecarImage is the image of the injected container.
	SidecarImage    string `env:"INJECTOR_SIDECAR_IMAGE"`
	ImagePullPolicy string `env:"INJECTOR_IMAGE_PULL_POLICY" envDefault:"IfNotPresent"`
	// NativeSidecar injects an init container with restartPolicy: Always
	// (Kubernetes 1.29 and later); false, a regular container.
	NativeSidecar bool `env:"INJECTOR_NATIVE_SIDECAR" envDefault:"true"`
	// Default resources of the injected container; annotations override.
	CPURequest    string `env:"INJECTOR_CPU_REQUEST" envDefault:"10m"`
	MemoryRequest string `env:"INJECTOR_MEMORY_REQUEST" envDefault:"32Mi"`
	CPULimit      string `env:"INJECTOR_CPU_LIMIT"`
	MemoryLimit   string `env:"INJECTOR_MEMORY_LIMIT" envDefault:"128Mi"`
	LogLevel      string `env:"LOG_LEVEL" envDefault:"info"`
	LogFormat     string `env:"LOG_FORMAT" envDefault:"json"`
}

// LoadConfig reads the injector's settings from environ. Errors name the
// variable.
func LoadConfig(environ map[string]string) (*Config, error) {
	for k, v := range environ {
		environ[k] = strings.TrimSpace(v)
	}
	var c Config
	if err := env.ParseWithOptions(&c, env.Options{Environment: environ}); err != nil {
		return nil, fmt.Errorf("reading the injector's settings: %w", err)
	}
	switch {
	case c.SidecarImage == "":
		return nil, errors.New("INJECTOR_SIDECAR_IMAGE: is required: the image of the container to inject")
	case c.CertFile == "" || c.KeyFile == "":
		return nil, errors.New("INJECTOR_TLS_CERT_FILE and INJECTOR_TLS_KEY_FILE: are required: the API server calls webhooks over HTTPS")
	}
	switch c.ImagePullPolicy {
	case "Always", "IfNotPresent", "Never":
	default:
		return nil, fmt.Errorf("INJECTOR_IMAGE_PULL_POLICY: %q is not Always, IfNotPresent or Never", c.ImagePullPolicy)
	}
	for _, q := range []struct{ name, value string }{
		{"INJECTOR_CPU_REQUEST", c.CPURequest}, {"INJECTOR_MEMORY_REQUEST", c.MemoryRequest},
		{"INJECTOR_CPU_LIMIT", c.CPULimit}, {"INJECTOR_MEMORY_LIMIT", c.MemoryLimit},
	} {
		if q.value == "" {
			continue
		}
		if _, err := resource.ParseQuantity(q.value); err != nil {
			return nil, fmt.Errorf("%s: %q is not a quantity such as 10m or 64Mi", q.name, q.value)
		}
	}
	return &c, nil
}
