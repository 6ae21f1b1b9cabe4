"""Local stand-ins for AWS: an SSM endpoint, a CloudFormation response receiver, and events.

Used by the demo, the local invoke, the CLI's ``--local`` mode and the end-to-end tests. Not
part of the Lambda artifact.
"""
