"""param_server"""
