{{- define "provider-metal.name" -}}
gardener-extension-provider-metal
{{- end -}}
{{- define "provider-metal.labels" -}}
app.kubernetes.io/name: {{ include "provider-metal.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
