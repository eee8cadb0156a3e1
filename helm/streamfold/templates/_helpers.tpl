{{- define "streamfold.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "streamfold.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "streamfold.selectorLabels" -}}
app.kubernetes.io/name: {{ include "streamfold.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "streamfold.labels" -}}
{{ include "streamfold.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "streamfold.checks" -}}
{{- if and .Values.autoscaling.hpa.enabled .Values.autoscaling.keda.enabled -}}
{{- fail "autoscaling.hpa.enabled and autoscaling.keda.enabled are mutually exclusive: pick one" -}}
{{- end -}}
{{- if gt (int .Values.replicaCount) (int .Values.partitions) -}}
{{- fail (printf "replicaCount (%d) exceeds partitions (%d): extra replicas would sit idle" (int .Values.replicaCount) (int .Values.partitions)) -}}
{{- end -}}
{{- end -}}
