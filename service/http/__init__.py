"""service.http"""
