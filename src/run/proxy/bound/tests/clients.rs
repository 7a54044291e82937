//! Real clients through the proxy: curl and Python's urllib trusting the CA bundle a sandbox
//! gets, and (c) the AWS CLI against moto_server with placeholder credentials only.
