package injector

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// container is the sidecar as injected: the sidecar's image serving on the
// pod's loopback, its settings from the ConfigMap and Secret the pod names,
// probes that ask it itself (kubelet's HTTP probes go to the pod IP, not
// loopback), and the hardened security context the chart's sidecar has.
func (c *Config) container(s podSettings) corev1.Container {
	ct := corev1.Container{
		Name:            ContainerName,
		Image:           c.SidecarImage,
		ImagePullPolicy: corev1.PullPolicy(c.ImagePullPolicy),
		Args:            []string{"serve"},
		Env: []corev1.EnvVar{
			// env wins over envFrom: the ConfigMap cannot move it off
			// loopback, where only the pod's containers reach it.
			{Name: "LISTEN_ADDR", Value: fmt.Sprintf("127.0.0.1:%d", s.port)},
		},
		EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: s.configMap}}}},
		Ports:          []corev1.ContainerPort{{Name: ContainerName, ContainerPort: int32(s.port), Protocol: corev1.ProtocolTCP}},
		ReadinessProbe: probe(false),
		LivenessProbe:  probe(true),
		Resources:      s.resources,
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             ptr.To(true),
			RunAsUser:                ptr.To[int64](65532),
			RunAsGroup:               ptr.To[int64](65532),
			ReadOnlyRootFilesystem:   ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
	if s.secret != "" {
		ct.EnvFrom = append(ct.EnvFrom, corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: s.secret}}})
	}
	return ct
}

// probe runs `authsidecar healthcheck` (or `healthcheck live`) in the
// container.
func probe(live bool) *corev1.Probe {
	cmd := []string{"/authsidecar", "healthcheck"}
	if live {
		cmd = append(cmd, "live")
	}
	return &corev1.Probe{
		ProbeHandler:   corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: cmd}},
		PeriodSeconds:  10,
		TimeoutSeconds: 3,
	}
}
