{{/* Chart name, truncated to a DNS label. */}}
{{- define "gridplace.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-gridplace, or the release name when it already says gridplace. */}}
{{- define "gridplace.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "gridplace.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of the chart's own objects. Never app.kubernetes.io/managed-by=gridplace: that marks
the operator's children, which it watches. */}}
{{- define "gridplace.labels" -}}
helm.sh/chart: {{ include "gridplace.chart" . }}
{{ include "gridplace.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gridplace
{{- end }}

{{- define "gridplace.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gridplace.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gridplace.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gridplace.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gridplace.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "gridplace.signalsNamespace" -}}
{{- default .Release.Namespace .Values.signals.namespace }}
{{- end }}

{{/* Fails with a clear message when a prometheus-operator kind is asked for but not served. */}}
{{- define "gridplace.requireMonitoringApi" -}}
{{- $kind := index . 0 }}
{{- $values := index . 1 }}
{{- $ctx := index . 2 }}
{{- if not ($ctx.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" $kind)) }}
{{- fail (printf "%s=true, but the cluster serves no monitoring.coreos.com/v1 %s: install prometheus-operator's CRDs first (for `helm template`, pass --api-versions monitoring.coreos.com/v1/%s)" $values $kind $kind) }}
{{- end }}
{{- end }}

{{/* signals.usdPerCurrency as GRIDPLACE_USD_PER_CURRENCY wants it: EUR=1.08,GBP=1.27 */}}
{{- define "gridplace.currencyRates" -}}
{{- $rates := list -}}
{{- range $code, $rate := . -}}
{{- $rates = append $rates (printf "%s=%v" $code $rate) -}}
{{- end -}}
{{- join "," $rates -}}
{{- end -}}
