"""service.disk"""
