import asyncio
import threading

from django.http import JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

_concurrency = {'now': 0, 'max': 0}


def _in_loop():
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _where(request):
    return {
        'path': request.path,
        'path_info': request.path_info,
        'script_name': request.META.get('SCRIPT_NAME'),
        'absolute': request.build_absolute_uri(),
        'reverse_sync': reverse('sync'),
        'query': request.GET.get('q'),
        'in_loop': _in_loop(),
        'thread': threading.get_ident(),
    }


async def async_view(request):
    await asyncio.sleep(0)
    return JsonResponse(dict(_where(request), kind='async'))


def sync_view(request):
    return JsonResponse(dict(_where(request), kind='sync'))


async def wait_view(request):
    """Holds the request 0.3 s: concurrent calls overlap on one worker's event loop."""
    _concurrency['now'] += 1
    _concurrency['max'] = max(_concurrency['max'], _concurrency['now'])
    try:
        await asyncio.sleep(0.3)
    finally:
        _concurrency['now'] -= 1
    return JsonResponse({'max_concurrent': _concurrency['max']})


@csrf_exempt
def exempt_post(request):
    length = len(request.body)  # before request.POST: Django forbids body after a stream read
    return JsonResponse({
        'method': request.method,
        'content_type': request.content_type,
        'form': {k: request.POST.getlist(k) for k in request.POST},
        'length': length,
        'in_loop': _in_loop(),
    })


def protected_post(request):
    return JsonResponse({'reached': True})


def inner_view(request):
    return JsonResponse({'inner': True, 'path': request.path, 'path_info': request.path_info})
