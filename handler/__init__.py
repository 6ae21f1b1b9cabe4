"""docker-tls: a CloudFormation custom resource for a Docker fleet's mutual-TLS bundle."""
