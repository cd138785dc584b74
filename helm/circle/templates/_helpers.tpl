{{/* Names */}}
{{- define "circle.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "circle.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "circle.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "circle.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels: no personal data, only names of the release and its parts. */}}
{{- define "circle.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "circle.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: circle
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "circle.selectorLabels" -}}
app.kubernetes.io/name: {{ include "circle.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The image reference: a digest pins it, else the tag, else appVersion. */}}
{{- define "circle.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The gRPC health service name a service reports on, e.g. circle.enrollment.v1.EnrollmentService */}}
{{- define "circle.grpcService" -}}
{{- printf "circle.%s.v1.%sService" . (title .) -}}
{{- end -}}

{{/* The OTLP endpoint: the configured one, else the chart's collector when it is on. */}}
{{- define "circle.otlpEndpoint" -}}
{{- if .Values.config.telemetry.otlp_endpoint -}}
{{- .Values.config.telemetry.otlp_endpoint -}}
{{- else if .Values.metrics.collector.enabled -}}
{{- printf "http://%s-otel-collector:4317" (include "circle.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
circle.toml from .Values.config. Strings are written as TOML basic strings (JSON string
syntax is a subset), numbers as integers, and empty optional strings (paths,
endpoints, users) are left out so that the service sees them unset.
*/}}
{{- define "circle.tomlValue" -}}
{{- if kindIs "string" . -}}
{{- toJson . -}}
{{- else if kindIs "bool" . -}}
{{- ternary "true" "false" . -}}
{{- else if or (kindIs "float64" .) (kindIs "int" .) (kindIs "int64" .) -}}
{{- int64 . -}}
{{- else if kindIs "slice" . -}}
[{{- range $i, $v := . }}{{ if $i }}, {{ end }}{{ include "circle.tomlValue" $v }}{{ end -}}]
{{- else -}}
{{- fail (printf "circle.toml: unsupported value %v" .) -}}
{{- end -}}
{{- end -}}

{{- define "circle.optionalKeys" -}}
tls_ca tls_cert tls_key credentials_file nkey_seed_file client_ca otlp_endpoint jwks_url issuer
{{- end -}}

{{- define "circle.toml" -}}
{{- $root := . -}}
{{- $optional := splitList " " (include "circle.optionalKeys" .) -}}
{{- $config := deepCopy .Values.config -}}
{{- $_ := set $config.telemetry "otlp_endpoint" (include "circle.otlpEndpoint" .) -}}
{{- /* Calls in flight get shutdown.drainSeconds after the drain delay; the grace period covers both. */ -}}
{{- $_ := set $config.grpc "drain_timeout_ms" (mul (int .Values.shutdown.drainSeconds) 1000) -}}
{{- range $svc := list "enrollment" "sessions" "accountability" -}}
{{- $_ := set (index $config $svc) "listen" (printf "0.0.0.0:%d" (int (index $root.Values.services $svc).port)) -}}
{{- end -}}
{{- if .Values.secrets.vaultMasterKeys.name -}}
{{- $_ := set $config "vault" (dict "master_keys_file" "/etc/circle/secrets/master-keys") -}}
{{- end -}}
{{- if .Values.secrets.jwks.name -}}
{{- if .Values.config.auth.jwks_url -}}
{{- fail "set secrets.jwks (auth.jwks_file) or config.auth.jwks_url, not both" -}}
{{- end -}}
{{- $_ := set $config.auth "jwks_file" "/etc/circle/secrets/jwks.json" -}}
{{- end -}}
# Rendered by the circle chart from its values (config:). Secrets are not here: they
# are files under /etc/circle/secrets/ named by CIRCLE_<SECTION>__<KEY>_FILE variables.
{{- range $section := keys $config | sortAlpha }}
{{- $table := index $config $section }}

[{{ $section }}]
{{- $subtables := list }}
{{- range $key := keys $table | sortAlpha }}
{{- $value := index $table $key }}
{{- if kindIs "map" $value }}
{{- $subtables = append $subtables $key }}
{{- else if and (kindIs "string" $value) (eq $value "") (has $key $optional) }}
{{- else }}
{{ $key }} = {{ include "circle.tomlValue" $value }}
{{- end }}
{{- end }}
{{- range $sub := $subtables }}

[{{ $section }}.{{ $sub }}]
{{- $subtable := index $table $sub }}
{{- range $key := keys $subtable | sortAlpha }}
{{ toJson $key }} = {{ include "circle.tomlValue" (index $subtable $key) }}
{{- end }}
{{- end }}
{{- end }}
{{ end -}}

{{/* Volumes every Circle pod mounts: config, secrets, TLS material, /tmp. */}}
{{- define "circle.volumes" -}}
{{- $v := .Values -}}
- name: config
  configMap:
    name: {{ .configMapName }}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
- name: secrets
  projected:
    defaultMode: 0440
    sources:
      {{- with $v.secrets.databaseUrl }}{{ if .name }}
      - secret:
          name: {{ .name }}
          items: [{key: {{ .key | quote }}, path: database-url}]
      {{- end }}{{ end }}
      {{- with $v.secrets.databaseOwnerUrl }}{{ if .name }}
      - secret:
          name: {{ .name }}
          items: [{key: {{ .key | quote }}, path: database-owner-url}]
      {{- end }}{{ end }}
      {{- with $v.secrets.vaultMasterKeys }}{{ if .name }}
      - secret:
          name: {{ .name }}
          items: [{key: {{ .key | quote }}, path: master-keys}]
      {{- end }}{{ end }}
      {{- with $v.secrets.jwks }}{{ if .name }}
      - secret:
          name: {{ .name }}
          items: [{key: {{ .key | quote }}, path: jwks.json}]
      {{- end }}{{ end }}
      {{- with .natsPassword }}{{ if .name }}
      - secret:
          name: {{ .name }}
          items: [{key: {{ .key | quote }}, path: nats-password}]
      {{- end }}{{ end }}
{{- range $v.tlsSecrets }}
- name: tls-{{ .name }}
  secret:
    secretName: {{ .secretName }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{- define "circle.volumeMounts" -}}
- name: config
  mountPath: /etc/circle/circle.toml
  subPath: circle.toml
  readOnly: true
- name: secrets
  mountPath: /etc/circle/secrets
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- range .Values.tlsSecrets }}
- name: tls-{{ .name }}
  mountPath: {{ .mountPath }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* Environment: the config file, the secret files, the NATS user, the instance id. */}}
{{- define "circle.env" -}}
- name: CIRCLE_CONFIG
  value: /etc/circle/circle.toml
{{- if .Values.secrets.databaseUrl.name }}
- name: CIRCLE_DATABASE__URL_FILE
  value: /etc/circle/secrets/database-url
{{- end }}
{{- if .Values.secrets.databaseOwnerUrl.name }}
- name: CIRCLE_DATABASE__OWNER_URL_FILE
  value: /etc/circle/secrets/database-owner-url
{{- end }}
{{- with .nats }}
{{- if .user }}
- name: CIRCLE_NATS__USER
  value: {{ .user | quote }}
{{- end }}
{{- if .passwordSecret.name }}
- name: CIRCLE_NATS__PASSWORD_FILE
  value: /etc/circle/secrets/nats-password
{{- end }}
{{- end }}
- name: CIRCLE_TELEMETRY__INSTANCE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end -}}

{{- define "circle.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "circle.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
