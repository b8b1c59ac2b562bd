"""nhs_sim: DEVELOPMENT/TEST ONLY simulator of NHS England's receiving side (never run in production)."""
