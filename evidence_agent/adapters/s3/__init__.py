"""The S3 object store with Object Lock; boto3 is loaded by `client` and what imports it, never here."""
