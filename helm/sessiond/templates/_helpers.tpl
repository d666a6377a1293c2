{{/*
Chart name, truncated to the 63 characters a DNS label allows.
*/}}
{{- define "sessiond.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name, plus the chart name unless the
release name already contains it.
*/}}
{{- define "sessiond.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, as used by the helm.sh/chart label.
*/}}
{{- define "sessiond.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource.
*/}}
{{- define "sessiond.labels" -}}
helm.sh/chart: {{ include "sessiond.chart" . }}
{{ include "sessiond.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sessiond
{{- end }}

{{/*
Selector labels: stable across upgrades, so never add a version here.
*/}}
{{- define "sessiond.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sessiond.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{/*
Name of the ServiceAccount the pods run as.
*/}}
{{- define "sessiond.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sessiond.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Label that lets a client pod through the NetworkPolicy when `grpcFrom` is set.
*/}}
{{- define "sessiond.clientLabel" -}}
{{- printf "%s-client" (include "sessiond.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Name of the claim holding the embedded store.
*/}}
{{- define "sessiond.claimName" -}}
{{- .Values.persistence.existingClaim | default (printf "%s-data" (include "sessiond.fullname" .)) }}
{{- end }}

{{/*
Termination grace period: the preStop sleep, then the drain, then a margin of
5 seconds for the process to exit after the drain deadline.
*/}}
{{- define "sessiond.terminationGracePeriodSeconds" -}}
{{- $needed := add (int .Values.lifecycle.preStopSleepSeconds) (int .Values.config.shutdownGraceSeconds) }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $needed 5 }}
{{- else if le (int .Values.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed lifecycle.preStopSleepSeconds + config.shutdownGraceSeconds (%d), or the pod is killed before it has drained: raise it or leave it null to derive it" (int .Values.terminationGracePeriodSeconds) (int $needed)) }}
{{- else }}
{{- int .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/*
Refuses combinations of values that would deploy a broken or unsafe release.
values.schema.json refuses the embedded multi-replica cases too; these
messages are the readable version, and hold when the schema is skipped.
*/}}
{{- define "sessiond.validate" -}}
{{- if eq .Values.store "embedded" }}
{{- if gt (int .Values.replicaCount) 1 }}
{{- fail (printf "store: embedded keeps sessions in a file that one pod owns, so replicaCount must be 1 (got %d): set store: redis (with redis.url or redis.existingSecret) to run several replicas" (int .Values.replicaCount)) }}
{{- end }}
{{- if .Values.autoscaling.enabled }}
{{- fail "store: embedded keeps sessions in a file that one pod owns, so autoscaling.enabled must be false: set store: redis (with redis.url or redis.existingSecret) to autoscale" }}
{{- end }}
{{- if .Values.strategy }}
{{- fail "strategy cannot be set with store: embedded, which always uses Recreate (its volume and file lock have one owner at a time): remove strategy or set store: redis" }}
{{- end }}
{{- else if eq .Values.store "redis" }}
{{- if and .Values.redis.url .Values.redis.urlKey }}
{{- fail "redis.url and redis.urlKey are both set: give the Redis URL either in plain text (redis.url) or from the Secret (redis.existingSecret + redis.urlKey), not both" }}
{{- end }}
{{- if and (not .Values.redis.existingSecret) (or .Values.redis.urlKey .Values.redis.passwordKey) }}
{{- fail "redis.urlKey and redis.passwordKey name keys of redis.existingSecret, which is empty: set redis.existingSecret to the Secret's name" }}
{{- end }}
{{- if eq .Values.redis.topology "sentinel" }}
{{- if or .Values.redis.url .Values.redis.urlKey }}
{{- fail "redis.topology: sentinel finds the master through the sentinels: leave redis.url and redis.urlKey empty" }}
{{- end }}
{{- if not (and .Values.redis.sentinel.addresses .Values.redis.sentinel.masterName) }}
{{- fail "redis.topology: sentinel needs redis.sentinel.addresses (host:port of each sentinel) and redis.sentinel.masterName" }}
{{- end }}
{{- else if eq .Values.redis.topology "cluster" }}
{{- if or .Values.redis.url .Values.redis.urlKey }}
{{- fail "redis.topology: cluster finds its nodes through redis.cluster.nodes: leave redis.url and redis.urlKey empty" }}
{{- end }}
{{- if not .Values.redis.cluster.nodes }}
{{- fail "redis.topology: cluster needs redis.cluster.nodes (host:port of some of its nodes)" }}
{{- end }}
{{- else if not (or .Values.redis.url (and .Values.redis.existingSecret .Values.redis.urlKey)) }}
{{- fail "store: redis needs a Redis URL: set redis.url, or redis.existingSecret and redis.urlKey to read it from a Secret" }}
{{- end }}
{{- end }}
{{- if and .Values.metrics.tls (not .Values.tls.existingSecret) }}
{{- fail "metrics.tls serves /metrics with the gRPC port's certificate, which needs TLS: set tls.existingSecret" }}
{{- end }}
{{- if regexMatch "^[A-Za-z0-9+.-]+://[^/@]*:[^/@]*@" (.Values.redis.url | default "") }}
{{- fail "redis.url carries a password, which would sit in plain text in the Deployment: put the password in a Secret and name it with redis.existingSecret and redis.passwordKey (or move the whole URL there with redis.urlKey)" }}
{{- end }}
{{- if and .Values.tls.clientCa.existingSecret (not .Values.tls.existingSecret) }}
{{- fail "tls.clientCa.existingSecret turns mTLS on, which needs TLS: set tls.existingSecret to the Secret holding the server's certificate and key" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "serviceMonitor.enabled needs metrics.enabled: there is no /metrics endpoint to scrape" }}
{{- end }}
{{- if and .Values.prometheusRule.enabled (not .Values.metrics.enabled) }}
{{- fail "prometheusRule.enabled needs metrics.enabled: its alerts read the /metrics endpoint, which is off" }}
{{- end }}
{{- if and .Values.grafanaDashboard.enabled (not .Values.metrics.enabled) }}
{{- fail "grafanaDashboard.enabled needs metrics.enabled: its panels read the /metrics endpoint, which is off" }}
{{- end }}
{{- if not (or .Values.auth.existingSecret .Values.tls.existingSecret .Values.insecure) }}
{{- fail "neither auth.existingSecret (bearer tokens) nor tls.existingSecret (TLS) is set, so any pod that reaches sessiond could read and write every session, in clear: set one or both, or set insecure: true to deploy without them knowingly" }}
{{- end }}
{{- end }}

{{/*
Environment of the sessiond container: listeners, store, Redis, then every
`config` key that is set, then `extraEnv`.
*/}}
{{- define "sessiond.env" -}}
- name: SESSIOND_LISTEN
  value: {{ printf "0.0.0.0:%d" (int .Values.containerPorts.grpc) | quote }}
- name: SESSIOND_METRICS_LISTEN
  value: {{ ternary (printf "0.0.0.0:%d" (int .Values.containerPorts.metrics)) "" .Values.metrics.enabled | quote }}
- name: SESSIOND_STORE
  value: {{ .Values.store | quote }}
{{- if eq .Values.store "embedded" }}
- name: SESSIOND_DB_PATH
  value: "/data/sessiond.redb"
{{- else if eq .Values.redis.topology "sentinel" }}
- name: SESSIOND_REDIS_SENTINEL
  value: {{ join "," .Values.redis.sentinel.addresses | quote }}
- name: SESSIOND_REDIS_SENTINEL_MASTER
  value: {{ .Values.redis.sentinel.masterName | quote }}
{{- else if eq .Values.redis.topology "cluster" }}
- name: SESSIOND_REDIS_CLUSTER
  value: {{ join "," .Values.redis.cluster.nodes | quote }}
{{- else }}
{{- if .Values.redis.urlKey }}
- name: SESSIOND_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret | quote }}
      key: {{ .Values.redis.urlKey | quote }}
{{- else }}
- name: SESSIOND_REDIS_URL
  value: {{ .Values.redis.url | quote }}
{{- end }}
{{- end }}
{{- if and (ne .Values.store "embedded") .Values.redis.username }}
- name: SESSIOND_REDIS_USERNAME
  value: {{ .Values.redis.username | quote }}
{{- end }}
{{- if and (ne .Values.store "embedded") .Values.redis.passwordKey }}
- name: SESSIOND_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret | quote }}
      key: {{ .Values.redis.passwordKey | quote }}
{{- end }}
{{- $vars := dict
  "logLevel" "SESSIOND_LOG_LEVEL"
  "logFormat" "SESSIOND_LOG_FORMAT"
  "otlpEndpoint" "SESSIOND_OTLP_ENDPOINT"
  "otlpSampleRatio" "SESSIOND_OTLP_SAMPLE_RATIO"
  "otlpServiceName" "SESSIOND_OTLP_SERVICE_NAME"
  "redisPoolSize" "SESSIOND_REDIS_POOL_SIZE"
  "redisKeyPrefix" "SESSIOND_REDIS_KEY_PREFIX"
  "redisTimeout" "SESSIOND_REDIS_TIMEOUT"
  "redisDurability" "SESSIOND_REDIS_DURABILITY"
  "redisDurabilityTimeout" "SESSIOND_REDIS_DURABILITY_TIMEOUT"
  "redisCheckInterval" "SESSIOND_REDIS_CHECK_INTERVAL"
  "cacheMaxBytes" "SESSIOND_CACHE_MAX_BYTES"
  "cacheMaxAge" "SESSIOND_CACHE_MAX_AGE"
  "leaseDefault" "SESSIOND_LEASE_DEFAULT"
  "leaseMin" "SESSIOND_LEASE_MIN"
  "leaseMax" "SESSIOND_LEASE_MAX"
  "waitMax" "SESSIOND_WAIT_MAX"
  "idleTtl" "SESSIOND_IDLE_TTL"
  "idempotencyWindow" "SESSIOND_IDEMPOTENCY_WINDOW"
  "rateLimitDefaultPerSecond" "SESSIOND_RATE_LIMIT_DEFAULT_PER_SECOND"
  "rateLimitDefaultBurst" "SESSIOND_RATE_LIMIT_DEFAULT_BURST"
  "sweepEvery" "SESSIOND_SWEEP_EVERY"
  "maxFields" "SESSIOND_MAX_FIELDS"
  "maxFieldBytes" "SESSIOND_MAX_FIELD_BYTES"
  "maxSessionBytes" "SESSIOND_MAX_SESSION_BYTES"
  "maxTurnPayloadBytes" "SESSIOND_MAX_TURN_PAYLOAD_BYTES"
  "maxConcurrentCalls" "SESSIOND_MAX_CONCURRENT_CALLS"
  "maxConnections" "SESSIOND_MAX_CONNECTIONS"
  "maxStreamsPerConnection" "SESSIOND_MAX_STREAMS_PER_CONNECTION"
  "maxHeaderListBytes" "SESSIOND_MAX_HEADER_LIST_BYTES"
  "http2KeepaliveInterval" "SESSIOND_HTTP2_KEEPALIVE_INTERVAL"
  "http2KeepaliveTimeout" "SESSIOND_HTTP2_KEEPALIVE_TIMEOUT"
  "maxConnectionAge" "SESSIOND_MAX_CONNECTION_AGE"
  "maxConnectionAgeGrace" "SESSIOND_MAX_CONNECTION_AGE_GRACE"
  "connectionIdleTimeout" "SESSIOND_CONNECTION_IDLE_TIMEOUT"
  "handshakeTimeout" "SESSIOND_HANDSHAKE_TIMEOUT"
  "maxCallsPerNamespace" "SESSIOND_MAX_CALLS_PER_NAMESPACE"
  "maxWaitersPerNamespace" "SESSIOND_MAX_WAITERS_PER_NAMESPACE"
  "maxWaitersPerSession" "SESSIOND_MAX_WAITERS_PER_SESSION"
  "maxWatchers" "SESSIOND_MAX_WATCHERS"
  "maxWatchersPerNamespace" "SESSIOND_MAX_WATCHERS_PER_NAMESPACE"
  "maxSessionsPerNamespace" "SESSIOND_MAX_SESSIONS_PER_NAMESPACE"
  "maxBytesPerNamespace" "SESSIOND_MAX_BYTES_PER_NAMESPACE"
  "reloadInterval" "SESSIOND_RELOAD_INTERVAL"
}}
{{- range $key, $name := $vars }}
{{- $value := index $.Values.config $key }}
{{- if not (kindIs "invalid" $value) }}
{{- /* Numbers may arrive as float64: print them as integers, never as 1e+06;
     the sample ratio and the default rate are the fractions. */}}
{{- if and (not (has $key (list "otlpSampleRatio" "rateLimitDefaultPerSecond"))) (or (kindIs "float64" $value) (kindIs "int64" $value) (kindIs "int" $value)) }}
{{- $value = int64 $value }}
{{- end }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- if .Values.tls.existingSecret }}
- name: SESSIOND_TLS_CERT
  value: "/etc/sessiond/tls/tls.crt"
- name: SESSIOND_TLS_KEY
  value: "/etc/sessiond/tls/tls.key"
- name: SESSIOND_HEALTH_LISTEN
  value: {{ printf "0.0.0.0:%d" (int .Values.containerPorts.health) | quote }}
{{- end }}
{{- if .Values.metrics.tls }}
- name: SESSIOND_METRICS_TLS
  value: "true"
{{- end }}
{{- if .Values.tls.clientCa.existingSecret }}
- name: SESSIOND_TLS_CLIENT_CA
  value: "/etc/sessiond/client-ca/ca.crt"
{{- end }}
{{- if .Values.auth.existingSecret }}
- name: SESSIOND_AUTH_TOKENS_FILE
  value: {{ printf "/etc/sessiond/auth/%s" .Values.auth.key | quote }}
{{- end }}
- name: SESSIOND_SHUTDOWN_GRACE
  value: {{ printf "%ds" (int .Values.config.shutdownGraceSeconds) | quote }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Port the probes ask: the gRPC port, or while TLS is on the plaintext
health-only listener (the kubelet's gRPC probes cannot speak TLS).
*/}}
{{- define "sessiond.probePort" -}}
{{- if .Values.tls.existingSecret }}
{{- .Values.containerPorts.health }}
{{- else }}
{{- .Values.containerPorts.grpc }}
{{- end }}
{{- end }}

{{/*
An image reference: by digest when one is given (what runs is then exactly
what was vetted, whatever the tag points to later), else by tag.
Takes (dict "image" <image values> "tag" <default tag>).
*/}}
{{- define "sessiond.imageRef" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (.image.tag | default .tag) }}
{{- end }}
{{- end }}
