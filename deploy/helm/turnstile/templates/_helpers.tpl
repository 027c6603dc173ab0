{{/*
The chart name, or nameOverride.
*/}}
{{- define "turnstile.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full resource name: fullnameOverride, or "<release>-<name>" (just the release name when it
already contains the chart name). Kubernetes names are at most 63 characters.
*/}}
{{- define "turnstile.fullname" -}}
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
"<chart>-<version>" for the helm.sh/chart label.
*/}}
{{- define "turnstile.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels every resource carries. Call with (dict "ctx" $ "component" "server").
*/}}
{{- define "turnstile.labels" -}}
helm.sh/chart: {{ include "turnstile.chart" .ctx }}
{{ include "turnstile.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: turnstile
{{- end }}

{{/*
Labels that select pods; they never change across upgrades. Call like turnstile.labels.
*/}}
{{- define "turnstile.selectorLabels" -}}
app.kubernetes.io/name: {{ include "turnstile.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
The ServiceAccount the pods run as.
*/}}
{{- define "turnstile.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "turnstile.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: repository, then @digest when set, else :tag (default: appVersion).
*/}}
{{- define "turnstile.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Name of the Secret the chart generates.
*/}}
{{- define "turnstile.secretName" -}}
{{- include "turnstile.fullname" . }}
{{- end }}

{{/*
Name of the ConfigMap holding pipelines.toml (an existing one, or the chart's).
*/}}
{{- define "turnstile.pipelinesConfigMap" -}}
{{- if .Values.pipelines.existingConfigMap }}
{{- .Values.pipelines.existingConfigMap }}
{{- else }}
{{- printf "%s-pipelines" (include "turnstile.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The pipelines.toml the chart ships: the inline override, else files/pipelines.toml.
*/}}
{{- define "turnstile.pipelinesContent" -}}
{{- if .Values.pipelines.content }}
{{- .Values.pipelines.content }}
{{- else }}
{{- .Files.Get "files/pipelines.toml" }}
{{- end }}
{{- end }}

{{/*
Whether the generated Secret has anything to hold: "true" or "".
*/}}
{{- define "turnstile.needsSecret" -}}
{{- $v := .Values }}
{{- if or (not $v.jwt.existingSecret.name) (not $v.dataService.existingSecret.name) (not $v.redis.existingSecret.name) (not $v.rabbitmq.existingSecret.name) (not $v.mail.existingSecret.name) (and $v.admin.password (not $v.admin.existingSecret.name)) }}
{{- "true" }}
{{- end }}
{{- end }}

{{/*
An env var read from a Secret: the existing Secret named in values when set, else the chart's
generated one. Call with (dict "ctx" $ "env" "REDIS_URL" "ref" .Values.redis.existingSecret).
*/}}
{{- define "turnstile.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      {{- if .ref.name }}
      name: {{ .ref.name }}
      key: {{ .ref.key }}
      {{- else }}
      name: {{ include "turnstile.secretName" .ctx }}
      key: {{ .env }}
      {{- end }}
{{- end }}

{{/*
Fail early on settings that TURNSTILE_ENV=production would refuse at start-up, and on a grace
period too short for the drain.
*/}}
{{- define "turnstile.validate" -}}
{{- $v := .Values }}
{{- $missing := list }}
{{- if not $v.dataService.url }}
{{- $missing = append $missing "dataService.url (DATA_SERVICE_URL)" }}
{{- end }}
{{- if not (or $v.dataService.token $v.dataService.existingSecret.name) }}
{{- $missing = append $missing "dataService.token or dataService.existingSecret.name (DATA_SERVICE_TOKEN)" }}
{{- end }}
{{- if not (or $v.redis.url $v.redis.existingSecret.name) }}
{{- $missing = append $missing "redis.url or redis.existingSecret.name (REDIS_URL)" }}
{{- end }}
{{- if not (or $v.rabbitmq.url $v.rabbitmq.existingSecret.name) }}
{{- $missing = append $missing "rabbitmq.url or rabbitmq.existingSecret.name (RABBITMQ_URL)" }}
{{- end }}
{{- if not (or $v.mail.smtpUrl $v.mail.existingSecret.name) }}
{{- $missing = append $missing "mail.smtpUrl or mail.existingSecret.name (SMTP_URL)" }}
{{- end }}
{{- if not $v.mail.from }}
{{- $missing = append $missing "mail.from (MAIL_FROM)" }}
{{- end }}
{{- if not $v.mail.publicUrl }}
{{- $missing = append $missing "mail.publicUrl (PUBLIC_URL)" }}
{{- end }}
{{- if $missing }}
{{- fail (printf "TURNSTILE_ENV=production refuses embedded defaults and an unauthenticated data service; set %s" (join ", " $missing)) }}
{{- end }}
{{- if and (or $v.admin.password $v.admin.existingSecret.name) (not $v.admin.email) }}
{{- fail "admin.email is required when an admin password is given" }}
{{- end }}
{{- $needed := add $v.shutdown.preStopSleepSeconds $v.shutdown.drainSeconds 5 }}
{{- if le (int $v.shutdown.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "shutdown.terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds + drainSeconds + 5 (%d)" (int $v.shutdown.terminationGracePeriodSeconds) (int $needed)) }}
{{- end }}
{{- end }}
