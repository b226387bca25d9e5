{{- define "metal-ccm.labels" -}}
app: kubernetes
role: cloud-controller-manager
{{- end -}}
{{- define "metal-ccm.featureGates" -}}
{{- $gates := list -}}
{{- range $k, $v := .Values.metalCCM.featureGates -}}
{{- $gates = append $gates (printf "%s=%t" $k $v) -}}
{{- end -}}
{{- join "," $gates -}}
{{- end -}}
{{- define "metal-ccm.cloudConfig" -}}
metalAPIURL: {{ .Values.metalCCM.metalAPIURL | quote }}
metalAPIToken: "@/etc/metal/credentials/metalAPIToken"
projectID: {{ .Values.metalCCM.projectID | quote }}
clusterID: {{ .Values.metalCCM.clusterID | quote }}
defaultExternalNetwork: {{ .Values.metalCCM.defaultExternalNetwork | quote }}
loadBalancer: {{ .Values.metalCCM.loadBalancer | quote }}
{{- end -}}
