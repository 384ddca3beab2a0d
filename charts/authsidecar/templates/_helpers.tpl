{{/*
The chart's app version, for the image tag. Kept here rather than read from
.Chart so the templates work when a parent chart includes them (its .Chart is
its own); CI checks it equals Chart.yaml's appVersion.
*/}}
{{- define "authsidecar.appVersion" -}}0.1.0{{- end -}}

{{- define "authsidecar.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (.Values.nameOverride | default "authsidecar") | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The service account the shared Deployment runs as. */}}
{{- define "authsidecar.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "authsidecar.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{- define "authsidecar.selectorLabels" -}}
app.kubernetes.io/name: authsidecar
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "authsidecar.labels" -}}
{{ include "authsidecar.selectorLabels" . }}
app.kubernetes.io/version: {{ include "authsidecar.appVersion" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Whether the container runs as a Kubernetes native sidecar. */}}
{{- define "authsidecar.native" -}}
{{- $native := toString .Values.sidecar.native -}}
{{- if eq $native "true" -}}true
{{- else if eq $native "false" -}}
{{- else if semverCompare ">=1.29-0" .Capabilities.KubeVersion.Version -}}true
{{- end -}}
{{- end -}}

{{- define "authsidecar.clientKeysEnabled" -}}
{{- if kindIs "bool" .Values.clientKeys.enabled -}}
{{- if .Values.clientKeys.enabled }}true{{ end -}}
{{- else if eq .Values.mode "shared" -}}true
{{- end -}}
{{- end -}}

{{/* The environment the ConfigMap holds: every non-secret setting. */}}
{{- define "authsidecar.configData" -}}
{{- $settings := dict "preset" "PRESET" "upstreamURL" "UPSTREAM_URL" "grant" "GRANT" "scope" "SCOPE" "clientID" "CLIENT_ID" "username" "USERNAME" "tokenURL" "TOKEN_URL" "refreshURL" "REFRESH_URL" "authorizeURL" "AUTHORIZE_URL" "redirectURL" "REDIRECT_URL" "revokeURL" "REVOKE_URL" "clientAuth" "CLIENT_AUTH" "tokenBody" "TOKEN_BODY" "inject" "INJECT" "queryParam" "QUERY_PARAM" "videoManagerID" "VIDEOMANAGER_ID" "auth" "AUTH" "rateLimit" "RATE_LIMIT" "rateLimitMaxWait" "RATE_LIMIT_MAX_WAIT" "rateLimitMaxCooldown" "RATE_LIMIT_MAX_COOLDOWN" "upstreamMaxIdleConns" "UPSTREAM_MAX_IDLE_CONNS" -}}
{{- $shared := eq .Values.mode "shared" -}}
{{- $delay := .Values.config.shutdownDelay | default (ternary "5s" "0s" $shared) -}}
LISTEN_ADDR: {{ printf "%s:%v" (ternary "0.0.0.0" "127.0.0.1" $shared) .Values.port | quote }}
ROUTES: {{ keys .Values.routes | sortAlpha | join "," | quote }}
LOG_LEVEL: {{ .Values.config.logLevel | quote }}
LOG_FORMAT: {{ .Values.config.logFormat | quote }}
ACCESS_LOG: {{ .Values.config.accessLog | quote }}
MAX_REPLAY_BYTES: {{ .Values.config.maxReplayBytes | int64 | toString | quote }}
UPSTREAM_TIMEOUT: {{ .Values.config.upstreamTimeout | quote }}
TOKEN_TIMEOUT: {{ .Values.config.tokenTimeout | quote }}
REFRESH_MARGIN: {{ .Values.config.refreshMargin | quote }}
SHUTDOWN_TIMEOUT: {{ .Values.config.shutdownTimeout | quote }}
SHUTDOWN_DELAY: {{ $delay | quote }}
FORWARDED_HEADERS: {{ .Values.config.forwardedHeaders | toString | quote }}
REDIS_MODE: {{ .Values.redis.mode | quote }}
FORWARD_TRACEPARENT: {{ .Values.tracing.forwardTraceparent | toString | quote }}
{{- with .Values.tracing }}{{ if .endpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ .endpoint | quote }}
OTEL_EXPORTER_OTLP_PROTOCOL: {{ .protocol | quote }}
OTEL_SERVICE_NAME: {{ .serviceName | quote }}
{{- with .sampler }}
OTEL_TRACES_SAMPLER: {{ . | quote }}
{{- end }}
{{- with .samplerArg }}
OTEL_TRACES_SAMPLER_ARG: {{ . | quote }}
{{- end }}
{{- end }}{{ end }}
REDIS_KEY_PREFIX: {{ .Values.redis.keyPrefix | quote }}
{{- range $name := keys .Values.routes | sortAlpha }}
{{- $prefix := printf "%s_" ($name | upper | replace "-" "_") }}
{{- range $key, $value := (index $.Values.routes $name) }}
{{- if hasKey $settings $key }}
{{ printf "%s%s" $prefix (index $settings $key) }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- /* What each named client key (NAME:KEY in the Secret) may reach. */}}
{{- range $name := keys (.Values.clientKeys.tenants | default dict) | sortAlpha }}
{{- $var := printf "CLIENT_KEY_%s" ($name | upper | replace "-" "_") }}
{{- with (index $.Values.clientKeys.tenants $name).routes }}
{{ $var }}_ROUTES: {{ join "," . | quote }}
{{- end }}
{{- with (index $.Values.clientKeys.tenants $name).accounts }}
{{ $var }}_ACCOUNTS: {{ join "," . | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Fails rendering with a clear message when Secrets are missing. */}}
{{- define "authsidecar.checkSecrets" -}}
{{- if and .Values.redis.existingSecret (not .Values.encryptionKey.existingSecret) -}}
{{- fail "encryptionKey.existingSecret is required with redis.existingSecret: tokens are sealed before they reach Redis (make a key with: openssl rand -base64 32)" -}}
{{- end -}}
{{- if and (include "authsidecar.clientKeysEnabled" .) (not .Values.clientKeys.existingSecret) -}}
{{- fail "clientKeys.existingSecret is required in shared mode, or anyone who reaches the Service borrows the vendor accounts; set clientKeys.enabled=false only if the NetworkPolicy is enough" -}}
{{- end -}}
{{- if not .Values.routes -}}
{{- fail "routes: configure at least one route" -}}
{{- end -}}
{{- if and (eq .Values.mode "shared") (gt (int .Values.shared.replicaCount) 1) (not .Values.redis.existingSecret) (not .Values.shared.replicasWithoutRedis) -}}
{{- fail "shared.replicaCount > 1 needs redis.existingSecret: replicas that keep tokens in their own memory each refresh a rotating refresh token, and the vendor revokes the whole family. Set redis.existingSecret, or shared.replicaCount: 1 (or shared.replicasWithoutRedis: true if no route's refresh tokens rotate)" -}}
{{- end -}}
{{- if and (eq .Values.mode "shared") .Values.shared.serviceMonitor.enabled .Values.shared.networkPolicy.enabled (not .Values.shared.networkPolicy.metricsFrom) -}}
{{- fail "shared.serviceMonitor.enabled with shared.networkPolicy.enabled needs shared.networkPolicy.metricsFrom (your Prometheus's namespaceSelector/podSelector), or the NetworkPolicy blocks the scrape" -}}
{{- end -}}
{{- end -}}

{{/*
The container. Context: a dict with Values (this chart's values), Release
and Capabilities. A native sidecar gets restartPolicy: Always and a startup
probe, so the pod's other containers start once it is ready.
*/}}
{{- define "authsidecar.container" -}}
{{- include "authsidecar.checkSecrets" . -}}
{{- $native := and (ne .Values.mode "shared") (include "authsidecar.native" .) -}}
name: authsidecar
image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default (include "authsidecar.appVersion" .) }}"
imagePullPolicy: {{ .Values.image.pullPolicy }}
args: ["serve"]
{{- if $native }}
restartPolicy: Always
{{- end }}
ports:
  # Not "http": as a sidecar it shares the pod with an app whose port is.
  - name: authsidecar
    containerPort: {{ .Values.port }}
    protocol: TCP
envFrom:
  - configMapRef:
      name: {{ include "authsidecar.fullname" . }}
  {{- if and .Values.credentials.existingSecret (not .Values.credentials.files) }}
  - secretRef:
      name: {{ .Values.credentials.existingSecret }}
  {{- end }}
{{- if or .Values.redis.existingSecret (include "authsidecar.clientKeysEnabled" .) .Values.adminToken.existingSecret .Values.extraEnv .Values.credentials.files (include "authsidecar.projectedRoutes" .) }}
env:
  {{- /* Secrets as files, watched: a rotated Secret applies without a restart. */}}
  {{- range .Values.credentials.files }}
  - {name: {{ . }}_FILE, value: /var/run/authsidecar/credentials/{{ . }}}
  {{- end }}
  {{- range $name := keys .Values.routes | sortAlpha }}
  {{- with (index $.Values.routes $name) }}{{ if .projectedToken }}
  - {name: {{ printf "%s_CLIENT_ASSERTION_FILE" ($name | upper | replace "-" "_") }}, value: /var/run/authsidecar/tokens/{{ $name }}/token}
  {{- end }}{{ end }}
  {{- end }}
  {{- with .Values.redis.existingSecret }}
  - name: REDIS_URL
    valueFrom:
      secretKeyRef: {name: {{ . }}, key: {{ $.Values.redis.urlKey }}}
  - name: TOKEN_ENCRYPTION_KEY
    valueFrom:
      secretKeyRef: {name: {{ $.Values.encryptionKey.existingSecret }}, key: {{ $.Values.encryptionKey.key }}}
  {{- with $.Values.encryptionKey.previousKey }}
  - name: TOKEN_ENCRYPTION_KEY_PREVIOUS
    valueFrom:
      secretKeyRef: {name: {{ $.Values.encryptionKey.existingSecret }}, key: {{ . }}}
  {{- end }}
  {{- end }}
  {{- if include "authsidecar.clientKeysEnabled" . }}
  - name: CLIENT_KEYS
    valueFrom:
      secretKeyRef: {name: {{ .Values.clientKeys.existingSecret }}, key: {{ .Values.clientKeys.key }}}
  {{- end }}
  {{- with .Values.adminToken.existingSecret }}
  - name: ADMIN_TOKEN
    valueFrom:
      secretKeyRef: {name: {{ . }}, key: {{ $.Values.adminToken.key }}}
  {{- end }}
  {{- with .Values.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
{{- /* A sidecar listens on the pod's loopback, which kubelet's HTTP probes
       (sent to the pod IP) cannot reach: it probes itself. */}}
{{- $ready := ternary (dict "httpGet" (dict "path" "/readyz" "port" "authsidecar")) (dict "exec" (dict "command" (list "/authsidecar" "healthcheck"))) (eq .Values.mode "shared") }}
{{- $live := ternary (dict "httpGet" (dict "path" "/healthz" "port" "authsidecar")) (dict "exec" (dict "command" (list "/authsidecar" "healthcheck" "live"))) (eq .Values.mode "shared") }}
{{- if $native }}
startupProbe:
  {{- toYaml $ready | nindent 2 }}
  periodSeconds: 1
  failureThreshold: 30
{{- end }}
livenessProbe:
  {{- toYaml $live | nindent 2 }}
  periodSeconds: 10
  timeoutSeconds: 3
readinessProbe:
  {{- toYaml $ready | nindent 2 }}
  periodSeconds: 5
  timeoutSeconds: 3
resources:
  {{- toYaml .Values.resources | nindent 2 }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
{{- if or .Values.credentials.files (include "authsidecar.projectedRoutes" .) }}
volumeMounts:
  {{- if .Values.credentials.files }}
  - {name: authsidecar-credentials, mountPath: /var/run/authsidecar/credentials, readOnly: true}
  {{- end }}
  {{- range $name := keys .Values.routes | sortAlpha }}
  {{- with (index $.Values.routes $name) }}{{ if .projectedToken }}
  - {name: authsidecar-token-{{ $name }}, mountPath: /var/run/authsidecar/tokens/{{ $name }}, readOnly: true}
  {{- end }}{{ end }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* Routes that present a projected service-account token as their client assertion. */}}
{{- define "authsidecar.projectedRoutes" -}}
{{- range $name, $r := .Values.routes }}{{ if and $r $r.projectedToken }}{{ $name }} {{ end }}{{ end -}}
{{- end -}}

{{/*
The pod's volumes the container mounts: the credentials Secret as files, and
a projected service-account token per route that asks for one (audience a
value). In sidecar mode, your pod spec includes it:
  volumes:
    {{- include "authsidecar.volumes" $ctx | nindent 4 }}
*/}}
{{- define "authsidecar.volumes" -}}
{{- if .Values.credentials.files }}
- name: authsidecar-credentials
  secret:
    secretName: {{ .Values.credentials.existingSecret }}
{{- end }}
{{- range $name := keys .Values.routes | sortAlpha }}
{{- with (index $.Values.routes $name) }}{{ if .projectedToken }}
- name: authsidecar-token-{{ $name }}
  projected:
    sources:
      - serviceAccountToken:
          path: token
          audience: {{ .projectedToken.audience | quote }}
          expirationSeconds: {{ .projectedToken.expirationSeconds | default 3600 }}
{{- end }}{{ end }}
{{- end }}
{{- end -}}

{{/*
For your pod spec, in sidecar mode. Pass a dict: (dict "Values"
.Values.authsidecar "Release" .Release "Capabilities" .Capabilities).
  initContainers:
    {{- include "authsidecar.initContainers" $ctx | nindent 4 }}
  containers:
    - name: app ...
    {{- include "authsidecar.containers" $ctx | nindent 4 }}
*/}}
{{- define "authsidecar.initContainers" -}}
{{- if include "authsidecar.native" . }}
- {{- include "authsidecar.container" . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "authsidecar.containers" -}}
{{- if not (include "authsidecar.native" .) }}
- {{- include "authsidecar.container" . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Pod annotations that roll the pods when the configuration changes, or the
Secrets it names do (read with lookup at install and upgrade; `helm
template` cannot see them and renders a constant).
*/}}
{{- define "authsidecar.checksumAnnotation" -}}
checksum/authsidecar-config: {{ include "authsidecar.configData" . | sha256sum }}
checksum/authsidecar-secrets: {{ include "authsidecar.secretsData" . | sha256sum }}
{{- end -}}

{{- define "authsidecar.secretsData" -}}
{{- $names := list .Values.credentials.existingSecret .Values.redis.existingSecret .Values.encryptionKey.existingSecret .Values.clientKeys.existingSecret .Values.adminToken.existingSecret | compact | uniq | sortAlpha -}}
{{- range $name := $names }}
{{- with lookup "v1" "Secret" $.Release.Namespace $name }}
{{ $name }}: {{ .data | toJson }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The injector's serving certificate as YAML (ca, cert, key; base64): the one
in the release's Secret when it exists, so upgrades keep it, else a new CA
and a certificate for the Service's names, valid ten years.
*/}}
{{- define "authsidecar.injectorTLS" -}}
{{- $name := printf "%s-injector" (include "authsidecar.fullname" .) -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (printf "%s-tls" $name) -}}
{{- if and $existing $existing.data (index $existing.data "ca.crt") -}}
ca: {{ index $existing.data "ca.crt" }}
cert: {{ index $existing.data "tls.crt" }}
key: {{ index $existing.data "tls.key" }}
{{- else if .Values.injector.certManager.enabled -}}
ca: ""
{{- else -}}
{{- $ca := genCA (printf "%s-ca" $name) 3650 -}}
{{- $dns := list (printf "%s.%s.svc" $name .Release.Namespace) (printf "%s.%s.svc.cluster.local" $name .Release.Namespace) (printf "%s.%s" $name .Release.Namespace) $name -}}
{{- $cert := genSignedCert (first $dns) nil $dns 3650 $ca -}}
ca: {{ $ca.Cert | b64enc }}
cert: {{ $cert.Cert | b64enc }}
key: {{ $cert.Key | b64enc }}
{{- end -}}
{{- end -}}
