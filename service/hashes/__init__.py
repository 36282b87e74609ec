"""service.hashes"""
