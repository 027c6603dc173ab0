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
Where JWT_SECRET comes from: "existing" (jwt.existingSecret), "inline" (jwt.secret), "kept"
(the chart's Secret in the cluster already holds one), "generate" (a first install into a live
cluster), or "" when none applies: `helm template` has no cluster to look up or to keep a
generated key in, so it must be given one; a random key on every render would log every user
out on every sync. A live cluster is told from a render without one by the kube-root-ca.crt
ConfigMap that Kubernetes puts in every namespace.
*/}}
{{- define "turnstile.jwtSource" -}}
{{- $jwt := .Values.jwt }}
{{- if $jwt.existingSecret.name }}
{{- "existing" }}
{{- else if $jwt.secret }}
{{- "inline" }}
{{- else }}
{{- $own := lookup "v1" "Secret" .Release.Namespace (include "turnstile.secretName" .) | default dict }}
{{- if dig "data" "JWT_SECRET" "" $own }}
{{- "kept" }}
{{- else if lookup "v1" "ConfigMap" .Release.Namespace "kube-root-ca.crt" }}
{{- "generate" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Where the previous JWT keys of a rotation are mounted (jwt.previous).
*/}}
{{- define "turnstile.jwtPreviousDir" -}}
/etc/turnstile-jwt-previous
{{- end }}

{{/*
checksum/secret on the pod template: the SHA-256 of what the pods read from Secrets, so a
changed URL, token or password rolls them on `helm upgrade`. It covers the values the chart
puts in its own Secret and, for each existing Secret (the previous JWT keys' included), the
key's data as the cluster holds it (nothing under `helm template`, so a render stays the same
for the same values). A JWT key
the chart generated and keeps never changes, so it is left out: a `helm upgrade` does not
roll pods because of it.
*/}}
{{- define "turnstile.secretChecksum" -}}
{{- $v := .Values }}
{{- $parts := dict }}
{{- $sources := list
  (list "DATA_SERVICE_TOKEN" $v.dataService.existingSecret $v.dataService.token)
  (list "REDIS_URL" $v.redis.existingSecret $v.redis.url)
  (list "RABBITMQ_URL" $v.rabbitmq.existingSecret $v.rabbitmq.url)
  (list "JWT_SECRET" $v.jwt.existingSecret $v.jwt.secret)
  (list "TURNSTILE_ADMIN_PASSWORD" $v.admin.existingSecret $v.admin.password)
  (list "SMTP_URL" $v.mail.existingSecret $v.mail.smtpUrl) }}
{{- with $v.jwt.previous }}
{{- range $env, $key := dict "JWT_PREVIOUS_SECRETS_FILE" .secretsKey "JWT_PREVIOUS_PUBLIC_KEYS_FILE" .publicKeysKey }}
{{- if and $.Values.jwt.previous.existingSecret $key }}
{{- $sources = append $sources (list $env (dict "name" $.Values.jwt.previous.existingSecret "key" $key) "") }}
{{- end }}
{{- end }}
{{- end }}
{{- range $sources }}
{{- $env := index . 0 }}
{{- $ref := index . 1 }}
{{- if $ref.name }}
{{- $found := lookup "v1" "Secret" $.Release.Namespace $ref.name | default dict }}
{{- $_ := set $parts $env (dict "secret" $ref.name "key" $ref.key "data" (dig "data" $ref.key "" $found)) }}
{{- else }}
{{- $_ := set $parts $env (index . 2) }}
{{- end }}
{{- end }}
{{- toJson $parts | sha256sum }}
{{- end }}

{{/*
A memory quantity (384Mi, 1Gi, 512M, or bytes) in MiB, as a number in a string.
*/}}
{{- define "turnstile.mebibytes" -}}
{{- $q := . }}
{{- if not (kindIs "string" $q) }}
{{- $q = printf "%.0f" (float64 $q) }}
{{- end }}
{{- $number := regexFind "^[0-9.]+" $q }}
{{- $unit := trimPrefix $number $q }}
{{- $factors := dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 }}
{{- divf (mulf (float64 $number) (get $factors $unit)) 1048576 }}
{{- end }}

{{/*
A CPU quantity (250m, 2, 1.5) in cores, as a number in a string.
*/}}
{{- define "turnstile.cores" -}}
{{- $q := toString . }}
{{- if hasSuffix "m" $q }}
{{- divf (float64 (trimSuffix "m" $q)) 1000 }}
{{- else }}
{{- float64 $q }}
{{- end }}
{{- end }}

{{/*
The memory the container needs for its password hashes, in MiB: the baseline plus one argon2
memory cost per hash that can run at once (passwordHashing.concurrentHashes, or the CPU limit
rounded up: the service hashes on at most as many cores as it may use). Fails when neither
says how many.
*/}}
{{- define "turnstile.hashingMemoryMiB" -}}
{{- $h := .Values.passwordHashing }}
{{- $hashes := int $h.concurrentHashes }}
{{- if eq $hashes 0 }}
{{- $cpu := dig "limits" "cpu" "" .Values.resources }}
{{- if not $cpu }}
{{- fail "passwordHashing.concurrentHashes: set it to the cores a pod may use (the node's, without a CPU limit) when resources.limits.cpu is unset: the memory limit is sized for that many argon2 hashes at once" }}
{{- end }}
{{- $hashes = int (ceil (float64 (include "turnstile.cores" $cpu))) }}
{{- end }}
{{- addf (float64 $h.baselineMemoryMiB) (mulf $hashes (divf $h.argon2MemoryKib 1024)) }}|{{ $hashes }}
{{- end }}

{{/*
Seconds the pod needs after SIGTERM beyond its drain, from the service's shutdown bounds:
in-flight requests get 5 s once the listener closes (IN_FLIGHT_GRACE_S), the event publisher
flushes for 5 s and is given 2 s more before it is cancelled (PUBLISHER_FLUSH_DEADLINE_S),
and closing the Redis, RabbitMQ and data-service connections is allowed 2 s.
*/}}
{{- define "turnstile.stopSecondsAfterDrain" -}}
{{- add 5 5 2 2 }}
{{- end }}

{{/*
Fail early on settings that TURNSTILE_ENV=production would refuse at start-up, on a grace
period too short for the whole shutdown, and on memory too small for the password hashes.
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
{{- if not (include "turnstile.jwtSource" .) }}
{{- $missing = append $missing "jwt.secret or jwt.existingSecret.name (JWT_SECRET: without a cluster to keep a generated key in, as under `helm template`, the chart cannot make one up)" }}
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
{{- fail (printf "missing values (the service runs with TURNSTILE_ENV=production, which starts with none of them missing): set %s" (join ", " $missing)) }}
{{- end }}
{{- with $v.jwt.previous }}
{{- if and .existingSecret (not (or .secretsKey .publicKeysKey)) }}
{{- fail "jwt.previous.existingSecret is set but names no key: set jwt.previous.secretsKey (HMAC) or jwt.previous.publicKeysKey (RS256, EdDSA)" }}
{{- end }}
{{- if and (not .existingSecret) (or .secretsKey .publicKeysKey) }}
{{- fail "jwt.previous.secretsKey and jwt.previous.publicKeysKey name keys of jwt.previous.existingSecret: set it" }}
{{- end }}
{{- end }}
{{- if and (or $v.admin.password $v.admin.existingSecret.name) (not $v.admin.email) }}
{{- fail "admin.email is required when an admin password is given" }}
{{- end }}
{{- $after := int (include "turnstile.stopSecondsAfterDrain" .) }}
{{- $needed := add $v.shutdown.preStopSleepSeconds $v.shutdown.drainSeconds $after }}
{{- if lt (int $v.shutdown.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "shutdown.terminationGracePeriodSeconds (%d) must be at least preStopSleepSeconds (%d) + drainSeconds (%d) + %d (in-flight grace 5, event flush 5 + 2, closing 2) = %d" (int $v.shutdown.terminationGracePeriodSeconds) (int $v.shutdown.preStopSleepSeconds) (int $v.shutdown.drainSeconds) $after (int $needed)) }}
{{- end }}
{{- $requested := dig "requests" "memory" "" $v.resources }}
{{- $limit := dig "limits" "memory" "" $v.resources }}
{{- $limitMiB := float64 (include "turnstile.mebibytes" $limit) }}
{{- if ne (float64 (include "turnstile.mebibytes" $requested)) $limitMiB }}
{{- fail (printf "resources.requests.memory (%v) must equal resources.limits.memory (%v): a pod using more than it requested is the first the kernel kills under memory pressure" $requested $limit) }}
{{- end }}
{{- $hashing := split "|" (include "turnstile.hashingMemoryMiB" .) }}
{{- $needMiB := float64 $hashing._0 }}
{{- if lt $limitMiB $needMiB }}
{{- fail (printf "resources.limits.memory (%v) is below what the password hashes need: passwordHashing.baselineMemoryMiB %v + %s concurrent hashes x %v KiB (argon2MemoryKib) = %.0f MiB" $limit $v.passwordHashing.baselineMemoryMiB $hashing._1 $v.passwordHashing.argon2MemoryKib $needMiB) }}
{{- end }}
{{- /* A secret's <NAME>_FILE beside the <NAME> the chart sets: Turnstile refuses both at start-up,
  so the pods would crash-loop; say so at `helm upgrade` instead. */}}
{{- $chartSecrets := dict "JWT_SECRET" "jwt.secret or jwt.existingSecret" "DATA_SERVICE_TOKEN" "dataService.token or dataService.existingSecret" "SMTP_URL" "mail.smtpUrl or mail.existingSecret" }}
{{- if or $v.admin.password $v.admin.existingSecret.name }}
{{- $_ := set $chartSecrets "TURNSTILE_ADMIN_PASSWORD" "admin.password or admin.existingSecret" }}
{{- end }}
{{- /* The forms of values that may hold a secret: checked here, not by the schema, whose message
  quotes the value it refuses (a password or a key in a terminal or a CI log). */}}
{{- $forms := list (list "redis.url" $v.redis.url "^((redis|rediss)://[^/?]+(/[0-9]*)?|(redis|rediss)\\+cluster://[^/?]+/?|redis\\+sentinel://[^/?]+/[^/?]+(/[0-9]+)?/?)([?].*)?$" "a redis://host[:port][/db], rediss://…, redis+cluster://host:port[,host:port…] (no db) or redis+sentinel://host:port[,…]/service_name[/db] URL") (list "rabbitmq.url" $v.rabbitmq.url "^amqps?://." "an amqp:// or amqps:// URL") (list "jwt.secret" $v.jwt.secret "(?s)^.{32,}$" "at least 32 characters long") (list "dataService.token" $v.dataService.token "^[A-Za-z0-9._~+/-]{16,}=*$" "an RFC 6750 token: at least 16 letters, digits or . _ ~ + / -") (list "mail.smtpUrl" $v.mail.smtpUrl "^(smtp|smtps|smtp\\+starttls)://." "an smtp://, smtp+starttls:// or smtps:// URL") }}
{{- range $forms }}
{{- $value := toString (index . 1) }}
{{- if and $value (not (regexMatch (index . 2) $value)) }}
{{- fail (printf "%s must be %s (its value is not shown: it may hold a secret)" (index . 0) (index . 3)) }}
{{- end }}
{{- end }}
{{- /* Combinations the schema cannot see, which the API server refuses or which stall a drain. */}}
{{- if and $v.autoscaling.enabled (gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) }}
{{- fail (printf "autoscaling.minReplicas (%d) is above autoscaling.maxReplicas (%d)" (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) }}
{{- end }}
{{- with $v.updateStrategy.rollingUpdate }}
{{- if and (eq (toString .maxSurge) "0") (eq (toString .maxUnavailable) "0") }}
{{- fail "updateStrategy.rollingUpdate: maxSurge and maxUnavailable are both 0, so no rollout could make progress; keep maxSurge (25%) with maxUnavailable 0" }}
{{- end }}
{{- end }}
{{- if and $v.podDisruptionBudget.enabled (eq (toString $v.podDisruptionBudget.maxUnavailable) "0") }}
{{- fail "podDisruptionBudget.maxUnavailable is 0: no node could ever be drained; keep 1" }}
{{- end }}
{{- range $name, $probe := $v.probes }}
{{- if gt (int $probe.timeoutSeconds) (int $probe.periodSeconds) }}
{{- fail (printf "probes.%s.timeoutSeconds (%d) is above its periodSeconds (%d): a check would still run when the next is due" $name (int $probe.timeoutSeconds) (int $probe.periodSeconds)) }}
{{- end }}
{{- end }}
{{- if and $v.serviceMonitor.enabled (gt (int (include "turnstile.seconds" $v.serviceMonitor.scrapeTimeout)) (int (include "turnstile.seconds" $v.serviceMonitor.interval))) }}
{{- fail (printf "serviceMonitor.scrapeTimeout (%s) is longer than serviceMonitor.interval (%s): Prometheus refuses the scrape configuration" $v.serviceMonitor.scrapeTimeout $v.serviceMonitor.interval) }}
{{- end }}
{{- /* A variable the chart sets itself, again in extraEnv: Kubernetes keeps the last one, which
  silently shadowed the chart's (a plain SMTP_URL put the SMTP password in the Deployment, out of
  checksum/secret), and duplicate names trouble the patches of later upgrades. The names are those
  the Deployment's env sets (templates/deployment.yaml): a name added there goes here too. */}}
{{- $chartSet := dict "TURNSTILE_ENV" "(always production)" "HOST" "(the pod listens on all addresses)" "PORT" "(8080, the probes' port)" "DATA_SERVICE_URL" "dataService.url" "DATA_SERVICE_TOKEN" "dataService.token or dataService.existingSecret" "REDIS_URL" "redis.url or redis.existingSecret" "RABBITMQ_URL" "rabbitmq.url or rabbitmq.existingSecret" "JWT_SECRET" "jwt.secret or jwt.existingSecret" "SMTP_URL" "mail.smtpUrl or mail.existingSecret" "MAIL_FROM" "mail.from" "PUBLIC_URL" "mail.publicUrl" "PIPELINES_FILE" "pipelines.content or pipelines.existingConfigMap" "TURNSTILE_DRAIN_SECONDS" "shutdown.drainSeconds" "ARGON2_MEMORY_KIB" "passwordHashing.argon2MemoryKib" "ARGON2_MAX_CONCURRENT" "passwordHashing" "LOG_LEVEL" "logLevel" "LOG_FORMAT" "logFormat" }}
{{- /* and those it sets only when told to */}}
{{- if $v.trustedProxies }}{{ $_ := set $chartSet "TRUSTED_PROXIES" "trustedProxies" }}{{ end }}
{{- if $v.jwt.previous.secretsKey }}{{ $_ := set $chartSet "JWT_PREVIOUS_SECRETS_FILE" "jwt.previous" }}{{ end }}
{{- if $v.jwt.previous.publicKeysKey }}{{ $_ := set $chartSet "JWT_PREVIOUS_PUBLIC_KEYS_FILE" "jwt.previous" }}{{ end }}
{{- if $v.admin.email }}{{ $_ := set $chartSet "TURNSTILE_ADMIN_EMAIL" "admin.email" }}{{ end }}
{{- if or $v.admin.password $v.admin.existingSecret.name }}{{ $_ := set $chartSet "TURNSTILE_ADMIN_PASSWORD" "admin.password or admin.existingSecret" }}{{ end }}
{{- if $v.mail.templatesConfigMap }}{{ $_ := set $chartSet "MAIL_TEMPLATES_DIR" "mail.templatesConfigMap" }}{{ end }}
{{- range $v.extraEnv }}
{{- if hasKey $chartSet (toString .name) }}
{{- fail (printf "extraEnv sets %s, which the chart sets itself: use %s instead" .name (get $chartSet (toString .name))) }}
{{- end }}
{{- end }}
{{- range $v.extraEnv }}
{{- $name := trimSuffix "_FILE" (toString .name) }}
{{- if and (hasSuffix "_FILE" (toString .name)) (hasKey $chartSecrets $name) }}
{{- fail (printf "extraEnv sets %s, but the chart already sets %s (from %s) and Turnstile refuses both: give the secret through %s" .name $name (get $chartSecrets $name) (get $chartSecrets $name)) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A Prometheus duration ("30s", "1m", "2h") in seconds, for comparing two of them.
*/}}
{{- define "turnstile.seconds" -}}
{{- $text := toString . -}}
{{- $units := dict "ms" 0 "s" 1 "m" 60 "h" 3600 -}}
{{- $number := regexFind "^[0-9]+" $text | default "0" | int -}}
{{- $unit := regexFind "[a-z]+$" $text | default "s" -}}
{{- if eq $unit "ms" }}{{ div $number 1000 }}{{ else }}{{ mul $number (get $units $unit | default 1) }}{{ end -}}
{{- end }}
