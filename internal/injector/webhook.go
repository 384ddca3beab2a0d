package injector

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// maxReviewBytes bounds an AdmissionReview: the API server sends at most a
// few MiB of object.
const maxReviewBytes = 8 << 20

// Webhook serves /mutate: AdmissionReview in, a JSON Patch out.
type Webhook struct {
	cfg       *Config
	log       *zap.Logger
	decisions *prometheus.CounterVec
}

// NewWebhook returns the webhook, counting its decisions on reg.
func NewWebhook(cfg *Config, log *zap.Logger, reg prometheus.Registerer) *Webhook {
	w := &Webhook{cfg: cfg, log: log, decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authsidecar_injector_admissions_total",
		Help: "Admission decisions: injected, skipped or refused.",
	}, []string{"outcome"})}
	reg.MustRegister(w.decisions)
	return w
}

func (wh *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "the webhook takes POST", http.StatusMethodNotAllowed)
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		http.Error(w, "an AdmissionReview is application/json", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReviewBytes+1))
	if err != nil || len(body) > maxReviewBytes {
		http.Error(w, "the AdmissionReview could not be read", http.StatusBadRequest)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(w, "not an AdmissionReview with a request", http.StatusBadRequest)
		return
	}
	req := review.Request
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	d, err := wh.cfg.Mutate(req.Object.Raw)
	if err != nil {
		d = Decision{Outcome: "refused", Reason: err.Error()}
	}
	switch d.Outcome {
	case "injected":
		pt := admissionv1.PatchTypeJSONPatch
		resp.PatchType, resp.Patch = &pt, d.Patch
	case "refused":
		resp.Allowed = false
		resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden,
			Message: "authsidecar injector: " + d.Reason}
	}
	wh.decisions.WithLabelValues(d.Outcome).Inc()
	wh.log.Info("admission",
		zap.String("outcome", d.Outcome), zap.String("reason", d.Reason),
		zap.String("namespace", req.Namespace), zap.String("pod", podName(req)), zap.String("uid", string(req.UID)))

	out := admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp}
	if out.APIVersion == "" {
		out.APIVersion, out.Kind = "admission.k8s.io/v1", "AdmissionReview"
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(out); err != nil {
		wh.log.Warn("writing the admission answer failed", zap.Error(err))
	}
}

// podName names the pod for logs; a pod made by a controller has only a
// generateName until it is created.
func podName(req *admissionv1.AdmissionRequest) string {
	if req.Name != "" {
		return req.Name
	}
	var meta struct {
		Metadata struct {
			Name, GenerateName string
		} `json:"metadata"`
	}
	if json.Unmarshal(req.Object.Raw, &meta) == nil {
		switch {
		case meta.Metadata.Name != "":
			return meta.Metadata.Name
		case meta.Metadata.GenerateName != "":
			return meta.Metadata.GenerateName + "*"
		}
	}
	return fmt.Sprintf("(unnamed, %s)", req.UID)
}
