{{- define "modelpress.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "modelpress.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* An object's name: the full name cut so that "-<suffix>" still fits Kubernetes' 63 characters.
     Called as (include "modelpress.resourceName" (dict "root" . "suffix" "mlflow")). */}}
{{- define "modelpress.resourceName" -}}
{{- $max := sub 62 (len .suffix) | int -}}
{{- printf "%s-%s" (include "modelpress.fullname" .root | trunc $max | trimSuffix "-") .suffix -}}
{{- end -}}

{{/* The standard labels (helm.sh/chart and app.kubernetes.io/*) on every object. */}}
{{- define "modelpress.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "modelpress.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelpress
{{- end -}}

{{- define "modelpress.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelpress.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "modelpress.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "modelpress.trackingUri" -}}
{{- if .Values.schedule.trackingUri -}}
{{ .Values.schedule.trackingUri }}
{{- else -}}
http://{{ include "modelpress.resourceName" (dict "root" . "suffix" "mlflow") }}.{{ .Release.Namespace }}.svc:{{ .Values.mlflow.port }}
{{- end -}}
{{- end -}}
