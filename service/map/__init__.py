"""service.map"""
