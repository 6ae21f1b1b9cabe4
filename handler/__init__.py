"""docker-tls: a CloudFormation custom resource for a Docker fleet's mutual-TLS bundle."""

#: The two resource types one Lambda serves.
GENERATOR = "Custom::SelfSignedCertificate"
GETTER = "Custom::SelfSignedCertificateGetter"
