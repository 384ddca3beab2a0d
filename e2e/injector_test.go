package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The chart installed in injector mode into a real API server; the injector
// run with the chart's certificate and its Deployment's settings (there is
// no kubelet: the webhook's Service points at the test's injector); pods
// created and read back.
func TestInjectorAgainstARealAPIServer(t *testing.T) {
	helm, authsidecar := binary(t, "E2E_HELM"), binary(t, "E2E_AUTHSIDECAR")
	c := startCluster(t)
	ctx := context.Background()
	const release, ns = "inj", "authsidecar"
	name := release + "-authsidecar-injector"

	install := exec.Command(helm, "install", release, "../charts/authsidecar", "--namespace", ns, "--create-namespace",
		"--set", "mode=injector", "--set", "image.tag=e2e", "--kubeconfig", c.kubeconfig, "--wait=false")
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}

	// The injector, as the chart's Deployment runs it.
	sec, err := c.client.CoreV1().Secrets(ns).Get(ctx, name+"-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// An upgrade keeps the serving certificate (and the webhook's CA).
	upgrade := exec.Command(helm, "upgrade", release, "../charts/authsidecar", "--namespace", ns,
		"--set", "mode=injector", "--set", "image.tag=e2e", "--kubeconfig", c.kubeconfig, "--wait=false")
	if out, err := upgrade.CombinedOutput(); err != nil {
		t.Fatalf("helm upgrade: %v\n%s", err, out)
	}
	after, err := c.client.CoreV1().Secrets(ns).Get(ctx, name+"-tls", metav1.GetOptions{})
	if err != nil || string(after.Data["tls.crt"]) != string(sec.Data["tls.crt"]) {
		t.Fatalf("helm upgrade replaced the serving certificate (%v)", err)
	}
	mwcAfter, err := c.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
	if err != nil || string(mwcAfter.Webhooks[0].ClientConfig.CABundle) != string(sec.Data["ca.crt"]) {
		t.Fatalf("after the upgrade the webhook's CA is not the certificate's (%v)", err)
	}
	certFile, keyFile := filepath.Join(c.dir, "tls.crt"), filepath.Join(c.dir, "tls.key")
	os.WriteFile(certFile, sec.Data["tls.crt"], 0o600)
	os.WriteFile(keyFile, sec.Data["tls.key"], 0o600)
	dep, err := c.client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	env := []string{"PATH=" + os.Getenv("PATH")}
	for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
		switch e.Name {
		case "INJECTOR_LISTEN_ADDR":
			e.Value = fmt.Sprintf("127.0.0.1:%d", port)
		case "INJECTOR_TLS_CERT_FILE":
			e.Value = certFile
		case "INJECTOR_TLS_KEY_FILE":
			e.Value = keyFile
		}
		env = append(env, e.Name+"="+e.Value)
	}
	runInjector := func() *exec.Cmd {
		out, _ := os.Create(filepath.Join(c.dir, "injector.log"))
		cmd := exec.Command(authsidecar, "injector")
		cmd.Env, cmd.Stdout, cmd.Stderr = env, out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	injector := runInjector()
	waitHealthy(t, sec.Data["ca.crt"], name+"."+ns+".svc", port)

	// No kubelet, no kube-proxy: the webhook's Service becomes an
	// ExternalName for this machine, and the webhook's port the injector's.
	svc, err := c.client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Spec = corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "localhost", Ports: svc.Spec.Ports}
	if _, err := c.client.CoreV1().Services(ns).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	hooks := c.client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	mwc, err := hooks.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := int32(port)
	mwc.Webhooks[0].ClientConfig.Service.Port = &p
	if _, err := hooks.Update(ctx, mwc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	for name, labels := range map[string]map[string]string{"shop": {"authsidecar.io/injection": "enabled"}, "other": nil} {
		if _, err := c.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod := func(namespace, name string, labels, annotations map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels, Annotations: annotations},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}
	}
	create := func(p *corev1.Pod) (*corev1.Pod, error) {
		// The webhook configuration reaches the API server's cache in a
		// moment; retry a refusal for a missing webhook answer briefly.
		return c.client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
	}
	optIn := map[string]string{"authsidecar.io/inject": "true"}

	var injected *corev1.Pod
	waitFor(t, "the first injection", func() bool {
		p, err := create(pod("shop", fmt.Sprintf("web-%d", time.Now().UnixNano()), optIn, map[string]string{"authsidecar.io/secret": "viewneo-credentials"}))
		if err == nil && len(p.Spec.InitContainers) > 0 {
			injected = p
			return true
		}
		return false
	})
	sc := injected.Spec.InitContainers[0]
	if sc.Name != "authsidecar" || sc.RestartPolicy == nil || *sc.RestartPolicy != corev1.ContainerRestartPolicyAlways || sc.Image != "ghcr.io/authsidecar/authsidecar:e2e" {
		t.Fatalf("injected init container %+v", sc)
	}
	if v := envOf(injected.Spec.Containers[0], "AUTHSIDECAR_URL"); v != "http://127.0.0.1:8080" {
		t.Errorf("the app's AUTHSIDECAR_URL is %q", v)
	}
	if injected.Annotations["authsidecar.io/status"] != "injected" {
		t.Error("no status annotation")
	}

	for _, p := range []*corev1.Pod{pod("shop", "not-labelled", nil, nil), pod("other", "not-opted-in-namespace", optIn, nil)} {
		got, err := create(p)
		if err != nil {
			t.Fatalf("%s/%s: %v", p.Namespace, p.Name, err)
		}
		if len(got.Spec.InitContainers) != 0 || len(got.Spec.Containers) != 1 {
			t.Errorf("%s/%s was injected", p.Namespace, p.Name)
		}
	}

	_, err = create(pod("shop", "bad", optIn, map[string]string{"authsidecar.io/prot": "9090"}))
	if err == nil || !strings.Contains(err.Error(), "authsidecar.io/prot") {
		t.Fatalf("a pod with a bad annotation: %v", err)
	}

	again := pod("shop", "already", optIn, nil)
	again.Annotations = map[string]string{"authsidecar.io/status": "injected"}
	again.Spec.InitContainers = injected.Spec.InitContainers
	got, err := create(again)
	if err != nil || len(got.Spec.InitContainers) != 1 || len(got.Spec.Containers) != 1 {
		t.Fatalf("a second injection changed the pod: %v %+v", err, got)
	}

	// The injector down: an opted-in pod is refused, an unrelated one is not.
	injector.Process.Kill()
	injector.Wait()
	if _, err := create(pod("shop", "while-down", optIn, nil)); err == nil {
		t.Fatal("an opted-in pod was created without its sidecar while the injector was down")
	}
	if _, err := create(pod("shop", "unrelated-while-down", nil, nil)); err != nil {
		t.Fatalf("an unrelated pod was blocked by the injector being down: %v", err)
	}
}

func envOf(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func waitHealthy(t *testing.T, ca []byte, serverName string, port int) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: serverName}}}
	waitFor(t, "the injector", func() bool {
		resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/healthz", port))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
