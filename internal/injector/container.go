package injector

import (
	"fmt"
	"maps"
	"slices"
	"strings"

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
	switch {
	case s.secret != "" && len(s.secretFiles) > 0:
		// As watched files: X and X_FILE must not both be set.
		ct.VolumeMounts = append(ct.VolumeMounts, corev1.VolumeMount{Name: credentialsVolume, MountPath: credentialsDir, ReadOnly: true})
		for _, k := range s.secretFiles {
			ct.Env = append(ct.Env, corev1.EnvVar{Name: k + "_FILE", Value: credentialsDir + "/" + k})
		}
	case s.secret != "":
		ct.EnvFrom = append(ct.EnvFrom, corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: s.secret}}})
	}
	for _, route := range slices.Sorted(maps.Keys(s.projected)) {
		dir := tokensDir + "/" + route
		ct.VolumeMounts = append(ct.VolumeMounts, corev1.VolumeMount{Name: tokenVolume(route), MountPath: dir, ReadOnly: true})
		ct.Env = append(ct.Env, corev1.EnvVar{Name: strings.ToUpper(strings.ReplaceAll(route, "-", "_")) + "_CLIENT_ASSERTION_FILE", Value: dir + "/token"})
	}
	return ct
}

const (
	credentialsVolume = "authsidecar-credentials"
	credentialsDir    = "/var/run/authsidecar/credentials"
	tokensDir         = "/var/run/authsidecar/tokens"
)

func tokenVolume(route string) string { return "authsidecar-token-" + route }

// volumes are the pod volumes the sidecar mounts, as the chart's sidecar
// mode has them.
func volumes(s podSettings) []corev1.Volume {
	var vs []corev1.Volume
	if s.secret != "" && len(s.secretFiles) > 0 {
		vs = append(vs, corev1.Volume{Name: credentialsVolume, VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{SecretName: s.secret}}})
	}
	for _, route := range slices.Sorted(maps.Keys(s.projected)) {
		vs = append(vs, corev1.Volume{Name: tokenVolume(route), VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Path: "token", Audience: s.projected[route], ExpirationSeconds: ptr.To[int64](3600)}}}}}})
	}
	return vs
}

// probe runs `authsidecar healthcheck` (or `healthcheck live`) in the
// container, as often as the chart's sidecar mode does: readiness every 5 s,
// so a draining sidecar leaves the pod's endpoints as fast as a charted one.
func probe(live bool) *corev1.Probe {
	cmd, period := []string{"/authsidecar", "healthcheck"}, int32(5)
	if live {
		cmd, period = append(cmd, "live"), 10
	}
	return &corev1.Probe{
		ProbeHandler:   corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: cmd}},
		PeriodSeconds:  period,
		TimeoutSeconds: 3,
	}
}
