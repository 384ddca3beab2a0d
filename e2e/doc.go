// Package e2e proves the sidecar injector against a real kube-apiserver and
// etcd on loopback: the chart installed with helm, the injector serving the
// chart's certificate with the Deployment's settings, pods created and read
// back. .ci/run builds the binaries (from Go modules) and sets
// E2E_KUBE_APISERVER, E2E_ETCD, E2E_HELM and E2E_AUTHSIDECAR.
package e2e
