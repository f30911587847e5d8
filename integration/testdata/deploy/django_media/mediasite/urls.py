from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.http import HttpResponseNotAllowed, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from mysite.urls import urlpatterns as site_patterns


@csrf_exempt
def media_upload(request):
    """Saves the uploaded file with the default storage and returns its public URL."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    f = request.FILES["file"]
    name = default_storage.save("uploads/" + f.name, ContentFile(f.read()))
    return JsonResponse({"name": name, "url": default_storage.url(name), "is_secure": request.is_secure()})


urlpatterns = site_patterns + [path("media-upload/", media_upload)]
