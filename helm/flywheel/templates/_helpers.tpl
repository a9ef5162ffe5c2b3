{{/* Names and labels, in one place. */}}

{{- define "flywheel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flywheel.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "flywheel.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "flywheel.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The SeldonDeployment's name: the model's name, as `flywheel deploy` and the controller expect. */}}
{{- define "flywheel.deployment" -}}
{{- .Values.model.name }}
{{- end }}

{{- define "flywheel.modelPodTemplate" -}}
{{- include "flywheel.fullname" . }}-model
{{- end }}

{{- define "flywheel.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flywheel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flywheel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "flywheel.labels" -}}
helm.sh/chart: {{ include "flywheel.chart" . }}
{{ include "flywheel.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
flywheel.io/model: {{ .Values.model.name }}
{{- end }}

{{/* repository@digest when a digest is given, else repository:tag. Argument: an images.* entry. */}}
{{- define "flywheel.image" -}}
{{- if .digest }}
{{- printf "%s@%s" .repository .digest }}
{{- else }}
{{- printf "%s:%s" .repository .tag }}
{{- end }}
{{- end }}

{{/*
Pull policy: images.pullPolicy when set; otherwise a digest never changes, so
IfNotPresent, while a tag may move, so Always.
*/}}
{{- define "flywheel.pullPolicy" -}}
{{- if .policy }}{{ .policy }}{{ else if .image.digest }}IfNotPresent{{ else }}Always{{ end }}
{{- end }}

{{/* A Prometheus duration of one unit (30s, 500ms, 1m, 1h) in seconds. */}}
{{- define "flywheel.seconds" -}}
{{- $n := regexFind "^[0-9]+" . | atoi }}
{{- $unit := trimPrefix (regexFind "^[0-9]+" .) . }}
{{- if eq $unit "ms" }}{{ divf $n 1000 }}{{ else if eq $unit "s" }}{{ $n }}{{ else if eq $unit "m" }}{{ mul $n 60 }}{{ else }}{{ mul $n 3600 }}{{ end }}
{{- end }}

{{/* checkov skip of the digest check, only when an image has no digest. */}}
{{- define "flywheel.digestSkip" -}}
{{- if not .digest }}
checkov.io/skip9: CKV_K8S_43=No digest given (images.*.digest); CI's promotion always sets one
{{- end }}
{{- end }}

{{- define "flywheel.pipelineRunner" -}}
{{- printf "%s-pipeline-runner" (include "flywheel.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flywheel.rolloutController" -}}
{{- printf "%s-rollout-controller" (include "flywheel.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The read-only web UI's ServiceAccount, Deployment, Service and NetworkPolicy. */}}
{{- define "flywheel.ui" -}}
{{- printf "%s-ui" (include "flywheel.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The ports the UI may reach the store on, as a JSON list: ui.networkPolicy.storePorts, else
storage.endpoint's port, else the scheme's (an endpoint without one, or AWS S3).
*/}}
{{- define "flywheel.storePorts" -}}
{{- $endpoint := .Values.storage.endpoint }}
{{- if .Values.ui.networkPolicy.storePorts }}
{{- .Values.ui.networkPolicy.storePorts | toJson }}
{{- else if regexMatch ":[0-9]+$" $endpoint }}
{{- list (regexFind "[0-9]+$" $endpoint | atoi) | toJson }}
{{- else if .Values.storage.secure }}[443]
{{- else }}[80]
{{- end }}
{{- end }}

{{/* The trigger engine's ServiceAccount and CronWorkflow. */}}
{{- define "flywheel.triggers" -}}
{{- printf "%s-triggers" (include "flywheel.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Pod Security Standards "restricted", for every pod and container in the chart. */}}
{{- define "flywheel.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "flywheel.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The S3 keys from the existing Secret, as environment variables. */}}
{{- define "flywheel.storageEnv" -}}
{{- include "flywheel.s3Env" .Values.storage.existingSecret }}
{{- end }}

{{/*
The S3 keys from a Secret, under the variables clusterConfig names (access_key_env,
secret_key_env). Argument: the Secret's name.
*/}}
{{- define "flywheel.s3Env" -}}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: AWS_SECRET_ACCESS_KEY
{{- end }}

{{/*
The model's pod: the spec of every predictor's pod in the SeldonDeployment that the
rollout controller renders. Keep in step with flywheel.rollout.seldon.pod:
tests/integration/test_chart.py renders both and compares them.
*/}}
{{- define "flywheel.modelPod" -}}
{{- $v := .Values -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  fsGroup: 10001
  seccompProfile:
    type: RuntimeDefault
automountServiceAccountToken: false
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
containers:
  - name: model
    image: {{ include "flywheel.image" $v.images.serving }}
    imagePullPolicy: {{ include "flywheel.pullPolicy" (dict "image" $v.images.serving "policy" $v.images.pullPolicy) }}
    env:
      # One OpenMP thread per gunicorn worker: see flywheel.rollout.seldon.SERVING_ENV.
      - name: OMP_NUM_THREADS
        value: "1"
      - name: INCLUDE_METRICS_IN_CLIENT_RESPONSE
        value: "false"
      - name: GUNICORN_WORKERS
        value: {{ $v.serving.workers | quote }}
      {{- include "flywheel.storageEnv" $ | nindent 6 }}
    ports:
      - name: http
        containerPort: 9000
        protocol: TCP
      - name: grpc
        containerPort: 9500
        protocol: TCP
      - name: metrics
        containerPort: 6000
        protocol: TCP
    resources:
      requests:
        cpu: {{ $v.serving.resources.requests.cpu | quote }}
        memory: {{ $v.serving.resources.requests.memory | quote }}
      limits:
        cpu: {{ $v.serving.resources.limits.cpu | quote }}
        memory: {{ $v.serving.resources.limits.memory | quote }}
    readinessProbe:
      httpGet:
        path: /health/status
        port: http
        scheme: HTTP
      initialDelaySeconds: 10
      periodSeconds: 5
      timeoutSeconds: 3
      failureThreshold: 3
    livenessProbe:
      httpGet:
        path: /health/ping
        port: http
        scheme: HTTP
      initialDelaySeconds: 30
      periodSeconds: 10
      timeoutSeconds: 3
      failureThreshold: 3
    securityContext:
      {{- include "flywheel.containerSecurityContext" $ | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 256Mi
{{- end }}

{{/*
What every monitoring step of the engine's workflow shares: the store's credentials, the
engine's resources, the restricted security context, the configuration and a scratch /tmp.
*/}}
{{- define "flywheel.monitorStep" -}}
env:
  {{- include "flywheel.storageEnv" . | nindent 2 }}
resources:
  {{- toYaml .Values.triggers.resources | nindent 2 }}
securityContext:
  {{- include "flywheel.containerSecurityContext" . | nindent 2 }}
volumeMounts:
  - name: config
    mountPath: /etc/flywheel
    readOnly: true
  - name: tmp
    mountPath: /tmp
{{- end }}

{{/*
The cluster's settings, laid over the flywheel.yaml in values' config: where this release
keeps its store, images, KFP and model, and what the chart's own values set. Each key here
is listed in values.yaml's config comment; tests/integration/test_chart.py compares the
rest with `flywheel config show`.
*/}}
{{- define "flywheel.clusterConfig" -}}
model_name: {{ .Values.model.name }}
data:
  source: {{ .Values.training.dataSource | quote }}
storage:
  uri: {{ .Values.storage.uri | quote }}
  endpoint: {{ if .Values.storage.endpoint }}{{ .Values.storage.endpoint | quote }}{{ else }}null{{ end }}
  secure: {{ .Values.storage.secure }}
  # The variables every pod gets from storage.existingSecret (flywheel.storageEnv); the
  # UI's get a read-only key, from ui.storeSecret.
  access_key_env: AWS_ACCESS_KEY_ID
  secret_key_env: AWS_SECRET_ACCESS_KEY
contract:
  # The Secret a training run's ingest step reads the salt of hashed pii columns from.
  pii_salt_secret: {{ .Values.privacy.existingSecret }}
pipeline:
  host: {{ .Values.training.kfpHost | quote }}
  s3_secret: {{ .Values.storage.existingSecret }}
  # What a run the trigger engine submits runs as, and in.
  image: {{ include "flywheel.image" .Values.images.components | quote }}
  service_account: {{ include "flywheel.pipelineRunner" . }}
  namespace: {{ if .Values.training.kfpMultiUser }}{{ .Release.Namespace }}{{ else }}null{{ end }}
serving:
  image: {{ printf "%s:%s" .Values.images.serving.repository .Values.images.serving.tag | quote }}
  image_digest: {{ if .Values.images.serving.digest }}{{ .Values.images.serving.digest | quote }}{{ else }}null{{ end }}
  namespace: {{ .Release.Namespace }}
  deployment: {{ include "flywheel.deployment" . }}
  replicas: {{ .Values.serving.replicas }}
  workers: {{ .Values.serving.workers }}
  max_rows: {{ .Values.serving.maxRows }}
  max_body_bytes: {{ .Values.serving.maxBodyBytes | int64 }}
  log_predictions: {{ .Values.serving.logPredictions }}
  log_max_bytes: {{ .Values.serving.logMaxBytes | int64 }}
  pod_template: {{ include "flywheel.modelPodTemplate" . }}
  resources:
    cpu_request: {{ .Values.serving.resources.requests.cpu | quote }}
    cpu_limit: {{ .Values.serving.resources.limits.cpu | quote }}
    memory_request: {{ .Values.serving.resources.requests.memory | quote }}
    memory_limit: {{ .Values.serving.resources.limits.memory | quote }}
rollout:
  driver: kubernetes
  interval_seconds: {{ .Values.rolloutController.intervalSeconds }}
  prometheus_url: {{ .Values.rolloutController.prometheusUrl | quote }}
  scrape_interval_seconds: {{ include "flywheel.seconds" .Values.serviceMonitor.interval }}
  checks:
    # Looks in a row that cannot measure before a rollback: at least two scrapes' worth.
    max_inconclusive: {{ max 12 (int (ceil (divf (mulf 2 (include "flywheel.seconds" .Values.serviceMonitor.interval | float64)) .Values.rolloutController.intervalSeconds))) }}
  steps: {{ .Values.rolloutController.steps | toJson }}
  accuracy: {{ .Values.rolloutController.accuracy | quote }}
  min_requests: {{ .Values.rolloutController.minRequests }}
monitoring:
  pushgateway: {{ if .Values.monitoring.pushgateway }}{{ .Values.monitoring.pushgateway | quote }}{{ else }}null{{ end }}
  # The share of requests serving logs: the rollout controller passes it to every predictor.
  log_sample: {{ .Values.monitoring.logSample }}
{{- end }}

{{/*
Lay `from` over `onto`, a mapping in place: a mapping in both is laid over key by key, any
other value of `from` replaces (null and false too, unlike sprig's merge).
*/}}
{{- define "flywheel.overlay" -}}
{{- $onto := .onto }}
{{- range $key, $value := .from }}
{{- if and (kindIs "map" $value) (kindIs "map" (get $onto $key)) }}
{{- include "flywheel.overlay" (dict "onto" (get $onto $key) "from" $value) }}
{{- else }}
{{- $_ := set $onto $key $value }}
{{- end }}
{{- end }}
{{- end }}
